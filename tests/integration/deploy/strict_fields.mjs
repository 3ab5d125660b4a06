// Unknown-field check for Kubernetes objects, from the TypeScript declarations that npm
// kubernetes-models ships (its schema validators accept unknown fields; `kubectl apply`
// with the API server's strict field validation does not). A typo such as
// `averageUtilisation` is reported with its path. Types the declarations give inline (maps,
// CRD bodies) are not descended into.
import fs from "node:fs";
import path from "node:path";
import { NODE_MODULES } from "./common.mjs";

const parsed = new Map();  // file -> {imports: Map(name -> file), aliases: Map(exported -> local), interfaces: Map(name -> Map(prop -> type))}

function parseFile(file) {
  if (parsed.has(file)) return parsed.get(file);
  const text = fs.readFileSync(file, "utf8").replace(/\/\*\*[\s\S]*?\*\//g, "");
  const imports = new Map();
  for (const m of text.matchAll(/import \{ ([^}]+) \} from "([^"]+)";/g)) {
    let target = m[2];
    target = target.startsWith(".") ? path.resolve(path.dirname(file), target) : path.join(NODE_MODULES, target);
    target = target.replace(/\.js$/, "") + ".d.ts";
    for (const name of m[1].split(",").map((s) => s.trim())) imports.set(name, target);
  }
  const aliases = new Map();
  for (const m of text.matchAll(/export type \{ ([^}]+) \}/g)) {
    for (const part of m[1].split(",")) {
      const [local, exported] = part.trim().split(/\s+as\s+/);
      if (exported) aliases.set(exported, local);
    }
  }
  const interfaces = new Map();
  for (const m of text.matchAll(/export interface (\w+)(?: extends [\w, ]+)? \{\n([\s\S]*?)\n\}/g)) {
    const props = new Map();
    // Only top-level properties: lines indented by exactly four spaces.
    for (const p of m[2].matchAll(/^ {4}"([^"]+)"\??: ([^\n]*)$/gm)) props.set(p[1], p[2].replace(/;$/, ""));
    interfaces.set(m[1], props);
  }
  const info = { imports, aliases, interfaces };
  parsed.set(file, info);
  return info;
}

// The interface's properties for a type named in `file`, or null when not resolvable.
function resolve(typeName, file) {
  const info = parseFile(file);
  if (info.interfaces.has(typeName)) return { props: info.interfaces.get(typeName), file };
  const local = info.aliases.get(typeName);
  if (local && info.interfaces.has(local)) return { props: info.interfaces.get(local), file };
  const target = info.imports.get(typeName);
  if (target && fs.existsSync(target)) return resolve(typeName, target);
  return null;
}

function walk(value, type, file, where, problems) {
  const arr = type.match(/^Array<(\w+)>$/);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, arr[1], file, `${where}[${i}]`, problems));
    return;
  }
  if (!/^\w+$/.test(type) || value === null || typeof value !== "object" || Array.isArray(value)) return;
  const r = resolve(type, file);
  if (!r || r.props.size === 0) return;
  for (const [k, v] of Object.entries(value)) {
    if (!r.props.has(k)) {
      problems.push(`${where}.${k}: unknown field (known: ${[...r.props.keys()].join(", ")})`);
      continue;
    }
    walk(v, r.props.get(k), r.file, `${where}.${k}`, problems);
  }
}

// Unknown fields of a core Kubernetes object, e.g. ("apps/v1", "Deployment", obj).
export function unknownFields(apiVersion, kind, obj) {
  const dir = apiVersion === "v1" ? "v1" : apiVersion;
  const file = path.join(NODE_MODULES, "kubernetes-models", dir, `${kind}.d.ts`);
  if (!fs.existsSync(file)) return null;
  const problems = [];
  walk(obj, `I${kind}`, file, kind, problems);
  return problems;
}
