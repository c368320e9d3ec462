import { defineLifecycleSuite } from './lifecycle.js';

defineLifecycleSuite('sqlite');
