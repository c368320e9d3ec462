/** The control plane's signed evidence about runs (docs/attestations.md). */
export { BUILD_TYPE, Provenance } from './provenance.js';
export type { ProvenanceDeps, StoredAttestation } from './provenance.js';
