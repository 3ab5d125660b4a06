// Checks grammar_samples' output with references independent of our code: JSON.parse, ajv
// (JSON Schema draft 2020-12), a RegExp with the "u" flag, or the choice list. Every output of
// every case must pass. Usage: node validate_samples.mjs SAMPLES.json
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const SOURCE_DIR = process.env.R1_SOURCE_DIR ??
  path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const require = createRequire(path.join(SOURCE_DIR, "tests/node/package.json"));
const Ajv2020 = require("ajv/dist/2020").default;

const file = process.argv[2];
const { cases } = JSON.parse(fs.readFileSync(file, "utf8"));
let failures = 0, checked = 0;
const fail = (name, i, out, why) => {
  failures++;
  console.error(`FAIL ${name} output ${i}: ${why}\n  ${JSON.stringify(out)}`);
};

for (const c of cases) {
  if (!c.outputs.length) fail(c.name, -1, "", "no outputs");
  let check;
  if (c.kind === "json_schema" || c.kind === "json_object") {
    const schema = c.kind === "json_object" ? { type: "object" } : c.schema;
    const validate = new Ajv2020({ allErrors: true }).compile(schema);
    check = (out) => {
      let v;
      try { v = JSON.parse(out); } catch (e) { return `not JSON: ${e.message}`; }
      return validate(v) ? null : JSON.stringify(validate.errors);
    };
  } else if (c.kind === "regex") {
    const re = new RegExp(`^(?:${c.pattern})$`, "u");
    check = (out) => (re.test(out) ? null : `does not match /${c.pattern}/`);
  } else if (c.kind === "choice") {
    check = (out) => (c.choices.includes(out) ? null : "not one of the choices");
  } else {
    throw new Error(`unknown kind ${c.kind}`);
  }
  c.outputs.forEach((out, i) => {
    const why = check(out);
    checked++;
    if (why) fail(c.name, i, out, why);
  });
  console.log(`${c.name}: ${c.outputs.length} outputs checked`);
}
console.log(`${checked} outputs, ${failures} failures`);
process.exit(failures ? 1 : 0);
