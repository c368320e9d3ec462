/**
 * DSSE envelopes: round trip, and every forgery an attacker can build from an envelope or a key
 * they hold is refused with a reason naming what failed.
 */
import { generateKeyPairSync, verify as cryptoVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IN_TOTO_PAYLOAD_TYPE, attestationSigner, signEnvelope, verifyEnvelope } from '../../src/attest/index.js';
import type { Envelope } from '../../src/attest/index.js';
import { LINK_PAYLOAD_TYPE, linkKeyId, pae } from '../../src/runner/index.js';

const newSigner = () => attestationSigner(generateKeyPairSync('ed25519').privateKey);
const alice = newSigner();
const bob = newSigner();
const mallory = newSigner();
const body = Buffer.from('{"_type":"https://in-toto.io/Statement/v1","subject":[]}');
const trusted = (...signers: { kid: string; publicKey: KeyObject }[]): Map<string, KeyObject> => new Map(signers.map((s) => [s.kid, s.publicKey]));

function failure(result: ReturnType<typeof verifyEnvelope>): string {
  if (result.ok) throw new Error('expected verification to fail');
  return result.reason;
}

describe('DSSE envelopes', () => {
  it('round-trips: the signature covers the PAE and verifies with the signer key', () => {
    const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, alice);
    expect(env.payloadType).toBe(IN_TOTO_PAYLOAD_TYPE);
    expect(Buffer.from(env.payload, 'base64')).toEqual(body);
    expect(env.signatures).toEqual([{ keyid: alice.kid, sig: expect.any(String) as string }]);
    expect(alice.kid).toBe(linkKeyId(alice.publicKey));
    expect(alice.kid).toMatch(/^[0-9a-f]{64}$/);
    // Interop: the signature is Ed25519 over exactly DSSEv1 PAE, as any DSSE verifier computes it.
    const manual = Buffer.from(`DSSEv1 ${IN_TOTO_PAYLOAD_TYPE.length} ${IN_TOTO_PAYLOAD_TYPE} ${body.length} ${body.toString()}`);
    expect(pae(IN_TOTO_PAYLOAD_TYPE, body)).toEqual(manual);
    expect(cryptoVerify(null, manual, alice.publicKey, Buffer.from(env.signatures[0]!.sig, 'base64'))).toBe(true);
    const result = verifyEnvelope(JSON.parse(JSON.stringify(env)), trusted(alice));
    expect(result).toEqual({ ok: true, payload: body, keyids: [alice.kid] });
  });

  it('refuses a tampered payload', () => {
    const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, alice);
    const tampered = { ...env, payload: Buffer.from(body.toString().replace('[]', '[{}]')).toString('base64') };
    expect(failure(verifyEnvelope(tampered, trusted(alice)))).toBe(`no valid signature from a trusted key (signature 1 does not verify with key ${alice.kid})`);
  });

  it('refuses a signature by a key that is not trusted, even if it claims a trusted key id', () => {
    const forged = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, { kid: alice.kid, sign: (d) => mallory.sign(d) });
    expect(failure(verifyEnvelope(forged, trusted(alice, bob)))).toContain(`signature 1 does not verify with key ${alice.kid}`);
    const own = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, mallory);
    expect(failure(verifyEnvelope(own, trusted(alice)))).toBe(`no valid signature from a trusted key (signature 1 uses unknown key id ${mallory.kid})`);
  });

  it('refuses a wrong payload type, and a signature moved to another payload type', () => {
    const link = signEnvelope(LINK_PAYLOAD_TYPE, body, alice);
    expect(failure(verifyEnvelope(link, trusted(alice)))).toBe(`payload type ${LINK_PAYLOAD_TYPE} is not ${IN_TOTO_PAYLOAD_TYPE}`);
    expect(verifyEnvelope(link, trusted(alice), { expectedPayloadType: LINK_PAYLOAD_TYPE }).ok).toBe(true);
    // Relabelled: the PAE binds the type, so the signature no longer verifies.
    const relabelled = { ...link, payloadType: IN_TOTO_PAYLOAD_TYPE };
    expect(failure(verifyEnvelope(relabelled, trusted(alice)))).toContain('does not verify');
  });

  it('refuses missing or malformed signatures and malformed envelopes', () => {
    const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, alice);
    expect(failure(verifyEnvelope({ ...env, signatures: [] }, trusted(alice)))).toBe('envelope has no signatures');
    expect(failure(verifyEnvelope({ payloadType: env.payloadType, payload: env.payload }, trusted(alice)))).toBe('envelope has no signatures');
    expect(failure(verifyEnvelope(null, trusted(alice)))).toBe('envelope is not a JSON object');
    expect(failure(verifyEnvelope([env], trusted(alice)))).toBe('envelope is not a JSON object');
    expect(failure(verifyEnvelope({ ...env, payloadType: 7 }, trusted(alice)))).toBe('envelope payloadType is missing or not a string');
    expect(failure(verifyEnvelope({ ...env, payload: `${env.payload}!` }, trusted(alice)))).toBe('envelope payload is not valid base64');
    expect(failure(verifyEnvelope({ ...env, signatures: [{ keyid: alice.kid, sig: 'not base64!' }] }, trusted(alice)))).toContain('signature 1 sig is not valid base64');
    expect(failure(verifyEnvelope({ ...env, signatures: [{ keyid: alice.kid, sig: Buffer.alloc(63).toString('base64') }] }, trusted(alice)))).toContain('signature 1 is not a 64-byte Ed25519 signature');
    expect(failure(verifyEnvelope({ ...env, signatures: ['x'] }, trusted(alice)))).toContain('signature 1 is not a JSON object');
    expect(failure(verifyEnvelope({ ...env, signatures: [{ keyid: 5, sig: env.signatures[0]!.sig }] }, trusted(alice)))).toContain('signature 1 keyid is not a string');
    const many = Array.from({ length: 17 }, () => env.signatures[0]!);
    expect(failure(verifyEnvelope({ ...env, signatures: many }, trusted(alice)))).toBe('envelope has more than 16 signatures');
    expect(failure(verifyEnvelope(env, trusted(alice), { threshold: 0 }))).toBe('threshold must be an integer of at least 1');
  });

  it('skips unknown key ids but still accepts a valid signature beside them', () => {
    const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, alice);
    const junk = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, mallory).signatures[0]!;
    const result = verifyEnvelope({ ...env, signatures: [junk, ...env.signatures] }, trusted(alice));
    expect(result).toEqual({ ok: true, payload: body, keyids: [alice.kid] });
  });

  it('counts a key once: the same signature twice cannot meet a threshold of two', () => {
    const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, alice);
    const sig = env.signatures[0]!;
    const doubled: Envelope = { ...env, signatures: [sig, sig] };
    expect(verifyEnvelope(doubled, trusted(alice, bob)).ok).toBe(true);
    const reason = failure(verifyEnvelope(doubled, trusted(alice, bob), { threshold: 2 }));
    expect(reason).toBe(`only 1 of 2 required trusted keys signed (signature 2 repeats key ${alice.kid}, which counts once)`);
    // Same key under two key ids (one without a keyid, so it is matched by trial) still counts once.
    const aliased = new Map([...trusted(alice, bob), ['alias', alice.publicKey]]);
    expect(failure(verifyEnvelope({ ...env, signatures: [sig, { keyid: 'alias', sig: sig.sig }] }, aliased, { threshold: 2 }))).toContain('repeats key alias');
    expect(failure(verifyEnvelope({ ...env, signatures: [sig, { keyid: '', sig: sig.sig }] }, trusted(alice, bob), { threshold: 2 }))).toContain('repeats key');
  });

  it('accepts two distinct trusted keys for a threshold of two', () => {
    const a = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, alice);
    const b = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, bob);
    const both: Envelope = { ...a, signatures: [...a.signatures, ...b.signatures] };
    const result = verifyEnvelope(both, trusted(alice, bob), { threshold: 2 });
    expect(result).toEqual({ ok: true, payload: body, keyids: [alice.kid, bob.kid] });
    expect(failure(verifyEnvelope(both, trusted(alice, bob), { threshold: 3 }))).toBe('only 2 of 3 required trusted keys signed');
    // One of the two is not trusted: the threshold is not met.
    expect(failure(verifyEnvelope(both, trusted(alice), { threshold: 2 }))).toContain(`signature 2 uses unknown key id ${bob.kid}`);
  });

  it('matches a signature without a key id against every trusted key', () => {
    const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, bob);
    const anonymous = { ...env, signatures: [{ sig: env.signatures[0]!.sig }] };
    expect(verifyEnvelope(anonymous, trusted(alice, bob))).toEqual({ ok: true, payload: body, keyids: [bob.kid] });
    expect(failure(verifyEnvelope(anonymous, trusted(alice)))).toContain('signature 1 has no key id and verifies with no trusted key');
  });

  it('refuses a trusted key that is not Ed25519 rather than verifying with another algorithm', () => {
    const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, body, alice);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    expect(failure(verifyEnvelope(env, new Map([[alice.kid, ec]])))).toContain(`trusted key ${alice.kid} is not an Ed25519 key`);
  });
});
