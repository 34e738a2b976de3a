// /docs: the gateway's OpenAPI document as a page, built here rather than fetched from
// anywhere: the gateway runs on machines with no way out.

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, attrs);
  e.append(...children);
  return e;
}

// A schema with its references inlined (one level per reference, cycles left as names).
function resolve(schema, doc, seen = new Set()) {
  if (schema === null || typeof schema !== "object") return schema;
  if (Array.isArray(schema)) return schema.map((s) => resolve(s, doc, seen));
  if (typeof schema.$ref === "string") {
    const name = schema.$ref.split("/").pop();
    if (seen.has(name)) return { $ref: name };
    return resolve(doc.components.schemas[name], doc, new Set([...seen, name]));
  }
  return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, resolve(v, doc, seen)]));
}

function operation(method, path, op, doc) {
  const box = el("section", { className: "op", id: op.operationId || "" },
    el("h2", {}, el("span", { className: "method" }, method), " ", el("code", {}, path)));
  if (op.operationId) box.append(el("p", {}, el("code", {}, op.operationId)));
  if (op.summary || op.description) box.append(el("p", {}, op.summary || op.description));
  const params = op.parameters || [];
  if (params.length) {
    const rows = params.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name)),
      el("td", {}, p.in), el("td", {}, p.required ? "required" : "optional"),
      el("td", {}, el("code", {}, JSON.stringify(p.schema || {})))));
    box.append(el("table", {}, el("tr", {}, ...["name", "in", "", "schema"].map((h) => el("th", {}, h))),
      ...rows));
  }
  if (op.requestBody) {
    for (const [type, content] of Object.entries(op.requestBody.content || {})) {
      box.append(el("h3", {}, `request body (${type})`),
        el("pre", {}, JSON.stringify(resolve(content.schema, doc), null, 2)));
    }
  }
  const responses = el("ul");
  for (const [code, resp] of Object.entries(op.responses || {})) {
    const types = Object.entries(resp.content || {}).map(([type, c]) =>
      `${type}${c.schema && c.schema.$ref ? ` ${c.schema.$ref.split("/").pop()}` : ""}`);
    responses.append(el("li", {}, el("code", {}, code), ` ${resp.description || ""} `, types.join(", ")));
  }
  box.append(el("h3", {}, "responses"), responses);
  return box;
}

async function main() {
  const target = document.getElementById("operations");
  let doc;
  try {
    const resp = await fetch("openapi.json");
    doc = await resp.json();
  } catch (err) {
    target.textContent = `could not read /openapi.json: ${err.message}`;
    return;
  }
  document.getElementById("title").textContent = `${doc.info.title} (version ${doc.info.version})`;
  const ops = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) ops.push(operation(method, path, op, doc));
  }
  const schemas = el("section", { className: "op" }, el("h2", {}, "schemas"),
    ...Object.entries(doc.components.schemas).map(([name, s]) =>
      el("details", {}, el("summary", {}, name), el("pre", {}, JSON.stringify(s, null, 2)))));
  target.replaceChildren(...ops, schemas);
}

main();
