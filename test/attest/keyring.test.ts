/**
 * Platform keys and stored attestations on every engine: one active key per purpose even when
 * replicas race to create it, rotation leaves old evidence verifiable, every change is audited,
 * the private key is never in the database in any encoding, and a swapped or altered sealed key
 * is refused. Tampering is done on the rows, as someone with database access would.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Attestations, IN_TOTO_PAYLOAD_TYPE, PlatformKeys, SLSA_PROVENANCE_V1, signEnvelope, signStatement, statement, verifyEnvelope, verifyStatement } from '../../src/attest/index.js';
import type { BlobSealer, Envelope, KeyPurpose } from '../../src/attest/index.js';
import { AuditLog } from '../../src/audit/index.js';
import { linkKeyId } from '../../src/runner/index.js';
import { openStore } from '../../src/storage/index.js';
import type { Store } from '../../src/storage/index.js';
import { RootKey, Vault } from '../../src/vault/index.js';
import { ENGINES, openTestStore } from '../support/engines.js';
import type { TestStore } from '../support/engines.js';
import { refusal } from '../support/refusal.js';

class Clock {
  private t = Date.parse('2026-03-01T12:00:00Z');
  readonly now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
}

const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);
const ADMIN = { kind: 'user', id: 'alice' } as const;

/** Every encoding a careless write could leave a key in. */
function encodings(secret: Buffer): { bytes: Buffer[]; text: string[] } {
  const seed = secret.subarray(secret.length - 32);
  const text: string[] = [];
  for (const b of [secret, seed]) text.push(b.toString('hex'), b.toString('base64'), b.toString('base64url'), b.toString('hex').toUpperCase());
  return { bytes: [secret, seed], text };
}

describe.each(ENGINES)('platform keys on %s', (engine) => {
  let ts: TestStore;
  let store: Store;
  let vault: Vault;
  let root: RootKey;
  let audit: AuditLog;
  let clock: Clock;
  /** Every plaintext the keyring asked the vault to seal: the PKCS#8 DER of each private key. */
  let sealed: Buffer[];
  let sealer: BlobSealer;
  let keys: PlatformKeys;
  const extra: Store[] = [];

  beforeEach(async () => {
    ts = await openTestStore(engine);
    store = ts.store;
    clock = new Clock();
    root = RootKey.fromBytes(randomBytes(32));
    vault = await Vault.open({ store, root, clock: clock.now });
    audit = new AuditLog(store);
    sealed = [];
    sealer = {
      sealBlob: (purpose, plaintext) => {
        sealed.push(Buffer.from(plaintext));
        return vault.sealBlob(purpose, plaintext);
      },
      openBlob: (purpose, text) => vault.openBlob(purpose, text),
    };
    keys = new PlatformKeys({ store, audit, sealer, clock: clock.now });
  });
  afterEach(async () => {
    for (const s of extra.splice(0)) await s.close();
    await ts.cleanup();
  });

  async function events(action: string): Promise<{ actor: { kind: string; id: string }; resource: string; details: Record<string, unknown> }[]> {
    return (await audit.search({ action })).map((e) => e.event as unknown as { actor: { kind: string; id: string }; resource: string; details: Record<string, unknown> });
  }

  async function rows(purpose?: KeyPurpose) {
    const q = store.db.selectFrom('platform_keys').selectAll().orderBy('created_at');
    return (purpose === undefined ? q : q.where('purpose', '=', purpose)).execute();
  }

  /** A fresh replica's view: same database, nothing cached. */
  function replica(s: Store = store): PlatformKeys {
    return new PlatformKeys({ store: s, audit: new AuditLog(s), sealer, clock: clock.now });
  }

  it('creates one key on first use, audited, and signs with it from then on', async () => {
    const signer = await keys.signer('attestation');
    expect(signer.kid).toBe(linkKeyId(signer.publicKey));
    expect(signer.kid).toBe(createHash('sha256').update(signer.publicKey.export({ type: 'spki', format: 'der' })).digest('hex'));
    expect((await keys.signer('attestation')).kid).toBe(signer.kid);
    expect((await replica().signer('attestation')).kid).toBe(signer.kid);
    const stored = await rows();
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ kid: signer.kid, purpose: 'attestation', algorithm: 'ed25519', retired_at: null, created_by: 'system:platform-keys', created_at: '2026-03-01T12:00:00.000Z' });
    expect(Buffer.from(stored[0]!.public_key)).toEqual(signer.publicKey.export({ type: 'spki', format: 'der' }).subarray(12));
    expect(await events('keys.create')).toEqual([expect.objectContaining({ actor: { kind: 'system', id: 'platform-keys' }, resource: `platform-keys/${signer.kid}`, details: { purpose: 'attestation', scope: '', kid: signer.kid, algorithm: 'ed25519' } })]);

    const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from('{}'), signer);
    expect(verifyEnvelope(env, await keys.verifierKeys())).toMatchObject({ ok: true, keyids: [signer.kid] });
    const info = await keys.keyInfo(signer.kid);
    expect(info).toEqual({
      kid: signer.kid,
      purpose: 'attestation',
      algorithm: 'ed25519',
      publicKeyPem: signer.publicKey.export({ type: 'spki', format: 'pem' }),
      publicKeyRaw: Buffer.from(stored[0]!.public_key).toString('base64'),
      scope: '',
      createdAt: '2026-03-01T12:00:00.000Z',
      retiredAt: null,
      status: 'active',
    });
    expect(await keys.keyInfo('0'.repeat(64))).toBeUndefined();
    // Purposes are separate keys; an attestation key is not a layout verifier.
    const layout = await keys.signer('layout');
    expect(layout.kid).not.toBe(signer.kid);
    expect([...(await keys.verifierKeys('layout')).keys()]).toEqual([layout.kid]);
    expect((await keys.verifierKeys()).size).toBe(2);
    await expect(keys.signer('other' as KeyPurpose)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('yields one active key when replicas race to create it', async () => {
    const other = await openStore(ts.config);
    extra.push(other);
    const a = replica(store);
    const b = replica(other);
    const signers = await Promise.all([a.signer('attestation'), b.signer('attestation'), a.signer('attestation'), b.signer('attestation')]);
    expect(new Set(signers.map((s) => s.kid)).size).toBe(1);
    expect(sealed.length).toBeGreaterThanOrEqual(2); // both replicas really did try to create one
    expect(await rows()).toHaveLength(1);
    expect(await events('keys.create')).toHaveLength(1);
    // Every racer signs with the winner's key.
    const verifier = await keys.verifierKeys('attestation');
    for (const s of signers) expect(verifyEnvelope(signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from('x'), s), verifier).ok).toBe(true);
  });

  it('rotates: the new key signs, the old one only verifies, and both events are audited', async () => {
    const first = await keys.signer('attestation');
    const oldEnvelope = signStatement(statement([{ name: 'a', digest: { sha256: SHA_A } }], 'https://example.com/p/v1', {}), first);
    const stale = replica();
    await stale.signer('attestation'); // a replica holding the old key in its cache
    clock.advance(60_000);
    const rotated = await keys.rotate('attestation', ADMIN, { requestId: 'req-1', sourceAddress: '10.0.0.1' });
    expect(rotated).toEqual({ kid: expect.stringMatching(/^[0-9a-f]{64}$/) as string, retired: first.kid });
    expect((await keys.signer('attestation')).kid).toBe(rotated.kid);
    expect((await stale.signer('attestation')).kid).toBe(rotated.kid);
    const stored = await rows('attestation');
    expect(stored.map((r) => [r.kid, r.retired_at, r.created_by])).toEqual([
      [first.kid, '2026-03-01T12:01:00.000Z', 'system:platform-keys'],
      [rotated.kid, null, 'user:alice'],
    ]);
    const listed = await keys.publicKeys();
    expect(listed.map((k) => [k.kid, k.status, k.retiredAt])).toEqual([
      [first.kid, 'retired', '2026-03-01T12:01:00.000Z'],
      [rotated.kid, 'active', null],
    ]);
    // Evidence signed before the rotation still verifies, and new evidence uses the new key.
    const verifier = await keys.verifierKeys('attestation');
    expect(verifyStatement(oldEnvelope, verifier)).toMatchObject({ ok: true, keyids: [first.kid] });
    const newEnvelope = signStatement(statement([{ name: 'a', digest: { sha256: SHA_A } }], 'https://example.com/p/v1', {}), await keys.signer('attestation'));
    expect(verifyStatement(newEnvelope, verifier)).toMatchObject({ ok: true, keyids: [rotated.kid] });
    const rotateEvents = await events('keys.rotate');
    expect(rotateEvents).toEqual([
      expect.objectContaining({ actor: { kind: 'user', id: 'alice' }, resource: `platform-keys/${rotated.kid}`, details: { purpose: 'attestation', scope: '', kid: rotated.kid, retired: first.kid, algorithm: 'ed25519' } }),
    ]);
    expect((await audit.search({ action: 'keys.rotate' }))[0]!.event.context).toMatchObject({ requestId: 'req-1', sourceAddress: '10.0.0.1' });
    // Rotating a purpose with no key yet simply creates one.
    expect(await keys.rotate('layout', ADMIN)).toEqual({ kid: expect.any(String) as string, retired: null });
    expect(await rows('layout')).toHaveLength(1);
  });

  it('keeps one layout key per project: rotating one leaves the others, and a bad scope is refused', async () => {
    const shop = await keys.signer('layout', 'project:shop');
    const pay = await keys.signer('layout', 'project:payroll');
    expect(shop.kid).not.toBe(pay.kid);
    expect((await keys.signer('layout', 'project:shop')).kid).toBe(shop.kid);
    const rotated = await keys.rotate('layout', ADMIN, undefined, 'project:shop');
    expect(rotated.retired).toBe(shop.kid);
    expect((await keys.signer('layout', 'project:payroll')).kid).toBe(pay.kid);
    expect((await keys.publicKeys()).filter((k) => k.status === 'active').map((k) => k.scope).sort()).toEqual(['project:payroll', 'project:shop']);
    await expect(keys.signer('layout', 'project:../../etc')).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('rotation is all or nothing: a failed audit record leaves the old key active', async () => {
    const first = await keys.signer('attestation');
    const broken = new PlatformKeys({ store, audit, sealer, clock: clock.now });
    // An actor the audit log refuses makes the record, and so the whole rotation, fail.
    await expect(broken.rotate('attestation', { kind: 'robot' as 'user', id: 'x' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    expect((await rows('attestation')).map((r) => [r.kid, r.retired_at])).toEqual([[first.kid, null]]);
    expect(await events('keys.rotate')).toHaveLength(0);
  });

  it('never stores, lists or audits the private key in any encoding', async () => {
    const a = await keys.signer('attestation');
    await keys.signer('layout');
    await keys.rotate('attestation', ADMIN);
    await keys.signer('attestation');
    const attestations = new Attestations({ store, clock: clock.now });
    await store.transact((tx) => attestations.insert(tx, { runId: null, envelope: signStatement(statement([{ name: 'a', digest: { sha256: SHA_A } }], 'https://example.com/p/v1', {}), a) }));
    expect(sealed).toHaveLength(3);
    const publicRaw = Buffer.from((await rows())[0]!.public_key);

    let haystackBytes: Buffer;
    let haystackText: string;
    if (engine === 'sqlite') {
      const file = (ts.config as { path: string }).path;
      haystackBytes = Buffer.concat([file, `${file}-wal`].filter((f) => existsSync(f)).map((f) => readFileSync(f)));
      haystackText = haystackBytes.toString('latin1');
    } else {
      const dump: string[] = [];
      for (const table of ['platform_keys', 'attestations', 'audit_events', 'vault_sealed_keys', 'vault_keys']) {
        const res = await sql<{ j: string }>`select row_to_json(t)::text as j from ${sql.table(table)} t`.execute(store.db);
        dump.push(...res.rows.map((r) => r.j));
      }
      haystackText = dump.join('\n');
      haystackBytes = Buffer.from(haystackText, 'latin1');
    }
    // Positive control: the search does find the public key where it is stored.
    const control = engine === 'sqlite' ? haystackBytes.includes(publicRaw) : haystackText.includes(publicRaw.toString('hex'));
    expect(control).toBe(true);
    expect(haystackText).toContain((await rows())[0]!.private_sealed);
    for (const der of sealed) {
      const { bytes, text } = encodings(der);
      for (const b of bytes) expect(haystackBytes.includes(b)).toBe(false);
      for (const t of text) expect(haystackText).not.toContain(t);
      const listed = JSON.stringify(await keys.publicKeys());
      for (const t of text) expect(listed).not.toContain(t);
    }
  });

  it('refuses a sealed key that was swapped, altered or does not match its public key', async () => {
    const att = await keys.signer('attestation');
    const lay = await keys.signer('layout');
    const [attRow] = await rows('attestation');
    const [layRow] = await rows('layout');
    // Swap: the layout key's sealed blob moved into the attestation row.
    await store.transact((tx) => tx.db.updateTable('platform_keys').set({ private_sealed: layRow!.private_sealed }).where('kid', '=', att.kid).execute());
    const swapped = await refusal(replica().signer('attestation'));
    expect(swapped.code).toBe('KEY_INVALID');
    expect(swapped.details).toMatchObject({ reason: 'unseal_failed', kid: att.kid });
    expect(swapped.message).toContain(att.kid);
    for (const der of sealed) for (const t of encodings(der).text) expect(`${swapped.message} ${JSON.stringify(swapped.details)}`).not.toContain(t);
    // Altered ciphertext.
    const text = attRow!.private_sealed;
    const flipped = `${text.slice(0, -2)}${text.at(-2) === 'A' ? 'B' : 'A'}${text.at(-1)!}`;
    await store.transact((tx) => tx.db.updateTable('platform_keys').set({ private_sealed: flipped }).where('kid', '=', att.kid).execute());
    expect(await refusal(replica().signer('attestation'))).toMatchObject({ code: 'KEY_INVALID', details: { reason: 'unseal_failed' } });
    // A sealer that opens anything (no purpose binding) still cannot pass off another key as this one.
    const layoutDer = sealed[1]!;
    const lax = new PlatformKeys({ store, audit, clock: clock.now, sealer: { sealBlob: (p, b) => sealer.sealBlob(p, b), openBlob: () => Promise.resolve(Buffer.from(layoutDer)) } });
    expect(await refusal(lax.signer('attestation'))).toMatchObject({ code: 'KEY_INVALID', details: { reason: 'private_key_mismatch', kid: att.kid } });
    // The untouched layout key still works; restoring the row restores signing.
    expect((await replica().signer('layout')).kid).toBe(lay.kid);
    await store.transact((tx) => tx.db.updateTable('platform_keys').set({ private_sealed: text }).where('kid', '=', att.kid).execute());
    expect((await replica().signer('attestation')).kid).toBe(att.kid);
  });

  it('refuses a row whose public key was replaced (its kid no longer matches)', async () => {
    const att = await keys.signer('attestation');
    await store.transact((tx) => tx.db.updateTable('platform_keys').set({ public_key: randomBytes(32) }).where('kid', '=', att.kid).execute());
    expect(await refusal(keys.verifierKeys())).toMatchObject({ code: 'KEY_INVALID', details: { reason: 'kid_mismatch', kid: att.kid } });
    expect(await refusal(keys.signer('attestation'))).toMatchObject({ code: 'KEY_INVALID', details: { reason: 'kid_mismatch' } });
  });

  it('stores attestations in the caller transaction, indexed from the signed statement', async () => {
    const signer = await keys.signer('attestation');
    await store.transact(async (tx) => {
      await tx.db.insertInto('projects').values({ id: 'p1', name: 'app', repo: '/srv/git/app', created_at: clock.now().toISOString(), created_by: 'user:alice' }).execute();
      await tx.db
        .insertInto('runs')
        .values({ id: 'run-1', project_id: 'p1', number: 1, ref: 'refs/heads/main', commit_sha: '0'.repeat(40), commit_json: '{}', pipeline_name: 'app', pipeline_digest: SHA_B, pipeline_json: '{}', trigger_json: '{}', trace_id: 't', state: 'succeeded', reason: null, created_at: clock.now().toISOString(), started_at: null, finished_at: null })
        .execute();
    });
    const attestations = new Attestations({ store, clock: clock.now });
    const two = statement(
      [
        { name: 'a.tgz', digest: { sha256: SHA_A } },
        { name: 'b.tgz', digest: { sha256: SHA_B } },
      ],
      SLSA_PROVENANCE_V1,
      { buildDefinition: { buildType: 'https://airlock.dev/buildtypes/pipeline/v1', externalParameters: {} }, runDetails: { builder: { id: 'https://airlock.example.com/builder' } } },
    );
    const env = signStatement(two, signer);
    const inserted = await store.transact(async (tx) => {
      const first = await attestations.insert(tx, { runId: 'run-1', envelope: env });
      const second = await attestations.insert(tx, { runId: 'run-1', envelope: env, subjectDigest: `sha256:${SHA_B}` });
      await audit.record(tx, { actor: ADMIN, action: 'attestations.create', resource: `attestations/${first.id}`, outcome: 'allowed' });
      return [first, second];
    });
    expect(inserted.map((r) => [r.subjectDigest, r.predicateType, r.kid, r.runId])).toEqual([
      [`sha256:${SHA_A}`, SLSA_PROVENANCE_V1, signer.kid, 'run-1'],
      [`sha256:${SHA_B}`, SLSA_PROVENANCE_V1, signer.kid, 'run-1'],
    ]);
    const found = await attestations.bySubject(`sha256:${SHA_B}`);
    expect(found.map((r) => r.id)).toEqual([inserted[1]!.id]);
    expect(found[0]!.envelope).toEqual(env);
    expect(verifyStatement(found[0]!.envelope, await keys.verifierKeys('attestation'))).toMatchObject({ ok: true });
    expect((await attestations.byRun('run-1')).map((r) => r.id).sort()).toEqual(inserted.map((r) => r.id).sort());
    expect(await attestations.get(inserted[0]!.id)).toEqual(inserted[0]);
    expect(await attestations.bySubject(`sha256:${'c'.repeat(64)}`)).toEqual([]);

    // The index cannot be made to lie about what was signed, and a failed insert rolls back with its unit.
    const bad: [Envelope, string | undefined, string][] = [
      [{ ...env, payloadType: 'application/json' }, undefined, 'envelope.payloadType'],
      [env, `sha256:${'c'.repeat(64)}`, 'subjectDigest'],
      [{ ...env, signatures: [] }, undefined, 'envelope.signatures'],
      [signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from('{"_type":"x"}'), signer), undefined, '_type'],
    ];
    for (const [envelope, subjectDigest, field] of bad) {
      const err = await refusal(store.transact((tx) => attestations.insert(tx, { runId: 'run-1', envelope, ...(subjectDigest === undefined ? {} : { subjectDigest }) })));
      expect(err.code).toBe('VALIDATION_FAILED');
      expect(err.message).toContain(field);
    }
    // A key id that is no platform key is refused by the database (foreign key).
    const foreign = { ...env, signatures: [{ keyid: 'f'.repeat(64), sig: env.signatures[0]!.sig }] };
    const fk = await refusal(store.transact((tx) => attestations.insert(tx, { runId: null, envelope: foreign })));
    expect(['CONFLICT', 'STORAGE_FAILED']).toContain(fk.code);
    expect(await attestations.byRun('run-1')).toHaveLength(2);
  });
});
