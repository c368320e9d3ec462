/**
 * securesystemslib canonical JSON, key objects and metablock signatures: fixed vectors taken from
 * securesystemslib 0.26 (Debian's, under in-toto 1.3), then a live cross-check of random values
 * and of signatures against that same library.
 */
import { spawnSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CanonicalJsonError, encodeCanonical, inTotoKeyId, inTotoLayoutKey, inTotoPublicKey, keyFromInToto, signMetablock, verifyMetablock } from '../../src/intoto/index.js';
import { inTotoPython } from './support.js';

// A fixed key: PKCS#8 of the seed 0x07 * 32.
const SEED_KEY = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, 7)]), format: 'der', type: 'pkcs8' });
const SEED_PUBLIC_HEX = 'ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c';
// securesystemslib.keys.format_metadata_to_key({keytype, scheme, keyval: {public}})["keyid"]
const SEED_KEYID = 'eab68a81e62173a71a44258d69ff4876569e173ae1d73ce908b7c8079b744ada';

describe('encodeCanonical', () => {
  // Each expected string is securesystemslib.formats.encode_canonical(input).
  const vectors: [unknown, string][] = [
    [{ b: [1, true, null, 'x'], a: {} }, '{"a":{},"b":[1,true,null,"x"]}'],
    // Only backslash and quote are escaped: control characters and non-ASCII go out raw (unlike RFC 8785).
    ['tab\tnew\nline\r\u0000 \u2028 é 😀', '"tab\tnew\nline\r\u0000 \u2028 é 😀"'],
    ['quote " back \\ slash /', '"quote \\" back \\\\ slash /"'],
    // Keys sort by code point: U+FFFF before U+1F600, although its UTF-16 unit is larger.
    [{ '\uFFFF': 2, '😀': 1, a: 0, B: -5, '': [] }, '{"":[],"B":-5,"a":0,"\uFFFF":2,"😀":1}'],
    [[[], {}, [{}]], '[[],{},[{}]]'],
    [{ big: 9007199254740991, neg: -9007199254740991 }, '{"big":9007199254740991,"neg":-9007199254740991}'],
    [{ n: 2n ** 70n }, '{"n":1180591620717411303424}'],
    [
      { _type: 'link', byproducts: { 'return-value': 0, stderr: '', stdout: '' }, command: ['/bin/sh', '-c', 'echo "hi" > out.txt'], environment: {}, materials: {}, name: 'build.compile', products: { 'out.txt': { sha256: '98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4' } } },
      '{"_type":"link","byproducts":{"return-value":0,"stderr":"","stdout":""},"command":["/bin/sh","-c","echo \\"hi\\" > out.txt"],"environment":{},"materials":{},"name":"build.compile","products":{"out.txt":{"sha256":"98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"}}}',
    ],
  ];
  it.each(vectors)('vector %#', (input, expected) => {
    expect(encodeCanonical(input)).toBe(expected);
  });

  it('refuses what securesystemslib would not encode the same way', () => {
    for (const bad of [1.5, NaN, Infinity, 2 ** 53, undefined, { a: undefined }, () => 1, Symbol('x'), new Date(0), Buffer.from('x'), new Map(), '\uD800 lone', { ['\uDC00']: 1 }, new Array<number>(2)]) {
      expect(() => encodeCanonical(bad)).toThrow(CanonicalJsonError);
    }
    expect(() => encodeCanonical({ a: [{ b: 0.1 }] })).toThrow(/\$\.a\[0\]\.b/);
  });

  it('matches securesystemslib on random JSON values (live cross-check)', () => {
    const value = fc.letrec((tie) => ({
      any: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.boolean(), fc.maxSafeInteger(), fc.string({ unit: 'binary' }), fc.array(tie('any'), { maxLength: 4 }), fc.dictionary(fc.string({ unit: 'binary' }), tie('any'), { maxKeys: 4 })),
    })).any;
    const samples = fc.sample(value, { numRuns: 300, seed: 42 });
    const script = 'import json,sys\nimport securesystemslib.formats as f\nfor line in sys.stdin:\n  print(json.dumps(f.encode_canonical(json.loads(line))))\n';
    const r = spawnSync(inTotoPython(), ['-c', script], { input: samples.map((v) => JSON.stringify(v)).join('\n'), encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const theirs = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as string);
    expect(theirs).toHaveLength(samples.length);
    samples.forEach((v, i) => expect(encodeCanonical(v)).toBe(theirs[i]));
  });
});

describe('Ed25519 key objects and metablocks', () => {
  it('derives the securesystemslib key object and key id', () => {
    expect(inTotoPublicKey(SEED_KEY)).toEqual({ keyid_hash_algorithms: ['sha256', 'sha512'], keytype: 'ed25519', keyval: { public: SEED_PUBLIC_HEX }, scheme: 'ed25519' });
    expect(inTotoKeyId(SEED_KEY)).toBe(SEED_KEYID);
    expect(inTotoLayoutKey(SEED_KEY).keyid).toBe(SEED_KEYID);
    expect(keyFromInToto(inTotoPublicKey(SEED_KEY)).export({ format: 'jwk' })).toEqual({ kty: 'OKP', crv: 'Ed25519', x: Buffer.from(SEED_PUBLIC_HEX, 'hex').toString('base64url') });
    expect(() => inTotoPublicKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)).toThrow(/Ed25519/);
    expect(() => keyFromInToto({ keytype: 'ed25519', scheme: 'ed25519', keyval: { public: 'zz' } })).toThrow(/64/);
  });

  it('signs the canonical JSON of signed, hex-encoded, and verifies only with that key and those bytes', () => {
    const signer = { publicKey: SEED_KEY, sign: (d: Buffer) => sign(null, d, SEED_KEY) };
    const block = signMetablock({ a: 1 }, signer);
    // The same signature securesystemslib verified for b'{"a":1}' with this key.
    expect(block).toEqual({ signatures: [{ keyid: SEED_KEYID, sig: 'c3c84c44582dc618e2d0e6ee5aa8306b397910e03cffb1e80fb12cfe46309642fb09dac35a35cc58268092e906759bda8068d90ace76a8bd6fc179754e58ab0e' }], signed: { a: 1 } });
    expect(verifyMetablock(block, SEED_KEY)).toEqual({ ok: true, keyid: SEED_KEYID });
    const other = generateKeyPairSync('ed25519');
    expect(verifyMetablock(block, other.publicKey)).toMatchObject({ ok: false, reason: expect.stringMatching(/no signature by key/) as unknown });
    expect(verifyMetablock({ ...block, signed: { a: 2 } }, SEED_KEY)).toMatchObject({ ok: false, reason: expect.stringMatching(/does not verify/) as unknown });
    // A float cannot be canonicalised: verification fails closed, as in Python.
    expect(verifyMetablock({ ...block, signed: { a: 1.5 } }, SEED_KEY).ok).toBe(false);
    // Another key's signature under this key's id.
    const forged = { signatures: [{ keyid: SEED_KEYID, sig: sign(null, Buffer.from('{"a":1}'), other.privateKey).toString('hex') }], signed: { a: 1 } };
    expect(verifyMetablock(forged, SEED_KEY).ok).toBe(false);
    for (const junk of [null, [], { signatures: {}, signed: {} }, { signatures: [{ keyid: SEED_KEYID, sig: 'xyz' }], signed: {} }]) expect(verifyMetablock(junk, SEED_KEY).ok).toBe(false);
  });

  it('produces metablocks securesystemslib verifies (live cross-check)', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const signed = { _type: 'link', name: 'é "q" \\ 😀', n: 3, list: [true, null] };
    const block = signMetablock(signed, { publicKey, sign: (d) => sign(null, d, privateKey) });
    const script = [
      'import json,sys',
      'import securesystemslib.keys as k, securesystemslib.formats as f',
      'd=json.load(sys.stdin)',
      'key,_=k.format_metadata_to_key(d["key"])',
      'print(json.dumps([key["keyid"], k.verify_signature(key, d["block"]["signatures"][0], f.encode_canonical(d["block"]["signed"]).encode("utf-8"))]))',
    ].join('\n');
    const r = spawnSync(inTotoPython(), ['-c', script], { input: JSON.stringify({ key: inTotoPublicKey(publicKey), block }), encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([inTotoKeyId(publicKey), true]);
  });
});
