// Parse every generated AsyncAPI document with the official parser; exit 1 on any error diagnostic.
import { Parser } from '@asyncapi/parser';
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..');
const parser = new Parser();
let failed = 0;
for (const name of readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
  const { document, diagnostics } = await parser.parse(readFileSync(join(dir, name), 'utf8'));
  const errors = diagnostics.filter((d) => d.severity === 0);
  if (!document || errors.length) {
    failed += 1;
    console.log(`${name}: INVALID`);
    for (const e of errors) console.log(`  ${e.path.join('.')}: ${e.message}`);
  } else {
    console.log(`${name}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels`);
  }
}
process.exit(failed ? 1 : 0);
