/**
 * in-toto v0.9 metadata as the reference implementation (in-toto 1.3, securesystemslib) reads it.
 * The field sets are exact: the verifier re-serialises `signed` from its own model, so a field it
 * does not know would be dropped before the signature is checked and the signature would fail.
 */
import type { KeyObject } from 'node:crypto';

/** A securesystemslib Ed25519 public key object (the `-t ed25519 -k FILE` format). */
export interface InTotoPublicKey {
  readonly keyid_hash_algorithms: readonly ['sha256', 'sha512'];
  readonly keytype: 'ed25519';
  readonly keyval: { readonly public: string };
  readonly scheme: 'ed25519';
}

/** A key as the layout's `keys` map holds it: the object plus its own key id. */
export interface InTotoLayoutKey extends InTotoPublicKey {
  readonly keyid: string;
}

/** `{"sha256": "<hex>"}`: in-toto's hash dict for one artifact. */
export type HashDict = Readonly<Record<string, string>>;

export interface InTotoLink {
  readonly _type: 'link';
  readonly name: string;
  readonly command: readonly string[];
  readonly materials: Readonly<Record<string, HashDict>>;
  readonly products: Readonly<Record<string, HashDict>>;
  readonly byproducts: {
    readonly 'return-value': number | null;
    readonly stdout: string;
    readonly stderr: string;
  };
  readonly environment: Readonly<Record<string, string | number>>;
}

/** One artifact rule, e.g. `["MATCH", "out.txt", "WITH", "PRODUCTS", "FROM", "build.compile"]`. */
export type ArtifactRule = readonly string[];

export interface InTotoStep {
  readonly _type: 'step';
  readonly name: string;
  readonly threshold: number;
  readonly pubkeys: readonly string[];
  readonly expected_command: readonly string[];
  readonly expected_materials: readonly ArtifactRule[];
  readonly expected_products: readonly ArtifactRule[];
}

export interface InTotoLayout {
  readonly _type: 'layout';
  /** `YYYY-MM-DDTHH:MM:SSZ`. */
  readonly expires: string;
  readonly keys: Readonly<Record<string, InTotoLayoutKey>>;
  readonly steps: readonly InTotoStep[];
  readonly inspect: readonly never[];
  readonly readme: string;
}

/** `{signatures, signed}`; `sig` is hex Ed25519 over the canonical JSON of `signed`. */
export interface Metablock<T> {
  readonly signatures: readonly { readonly keyid: string; readonly sig: string }[];
  readonly signed: T;
}

/** Signs in-toto metadata. The private key stays with the caller (runner, vault). */
export interface InTotoSigner {
  readonly publicKey: KeyObject;
  sign(data: Buffer): Buffer;
}
