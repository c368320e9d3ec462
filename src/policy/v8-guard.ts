/**
 * Turn off V8's inlining of JS-to-WebAssembly calls before the Cedar module loads. On Node 20
 * (V8 11.3) a lazy deoptimization of optimized code that had inlined a call into the Cedar
 * Wasm build aborted the whole process ("unreachable code" in DoComputeBuiltinContinuation)
 * after a few thousand secret-release decisions under load; a policy engine must never take
 * the server down. The cost is one call frame per decision. Newer V8s without the flag ignore it.
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--no-turbo-inline-js-wasm-calls');
