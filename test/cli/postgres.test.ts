import { defineLifecycleSuite } from './lifecycle.js';

// PostgreSQL at 127.0.0.1:5432 is real and never skipped (test/support/engines.ts).
defineLifecycleSuite('postgres');
