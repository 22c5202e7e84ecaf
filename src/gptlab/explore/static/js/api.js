// Talking to the server, or, in an exported page, reading the answers saved in it.
//
// Each view's request is declared once, in Python (gptlab/explore/registry.py): GET api/views
// gives every field's default, choices and bounds, so this page copies none of them. An
// exported page (gptlab explore --export) holds window.GPTLAB_EXPORT = {models, views, prompt,
// answers}: per view, {shared, saved: [{settings, answer}]}, every answer the page needs for
// its one prompt beside the settings it was computed with.

export const exported = window.GPTLAB_EXPORT ?? null;

let described = null;

// {route: {fields: {name: {default | required, choices?, ge?, le?}}, exported}}
export async function viewRequests() {
  if (!described) described = exported ? Promise.resolve(exported.views) : fetch("api/views").then(readAnswer);
  return described;
}

// A request as the server completes it: the route's defaults, then what the page set.
export async function fullRequest(route, body) {
  const fields = (await viewRequests())[route].fields;
  const request = {};
  for (const [name, field] of Object.entries(fields)) if ("default" in field) request[name] = field.default;
  return { ...request, ...body };
}

async function savedAnswer(route, body) {
  if ("prompt" in body && body.prompt !== exported.prompt) throw new Error("this exported page holds one prompt; run `gptlab explore` to try others");
  const request = await fullRequest(route, body);
  const view = exported.answers[route];
  const hit = view?.saved.find((s) => Object.entries(s.settings).every(([k, v]) => request[k] === v));
  if (!hit) throw new Error("this exported page did not save that view; run `gptlab explore` for the live page");
  if (hit.answer.error) throw new Error(hit.answer.error);
  return { ...view.shared, ...hit.answer };  // fields equal in every answer are saved once
}

export async function api(route, body) {
  if (exported) return savedAnswer(route, body);
  const response = await fetch(`api/${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return readAnswer(response);
}

async function readAnswer(response) {
  let data;
  try {
    data = await response.json();
  } catch {
    throw new Error(`the server answered ${response.status} with something that is not JSON`);
  }
  if (!response.ok) throw new Error(data.error ?? `the server answered ${response.status}`);
  return data;
}

export async function listModels() {
  if (exported) return exported.models;
  return readAnswer(await fetch("api/models"));
}

export async function runData(model, since) {
  if (exported) return exported.run;
  return readAnswer(await fetch(`api/run?model=${encodeURIComponent(model)}&since=${since}`));
}

// Streamed generation: calls onEvent for each JSON line as it arrives.
export async function streamGenerate(body, onEvent, signal) {
  if (exported) throw new Error("generation needs the server: run `gptlab explore`");
  const response = await fetch("api/generate", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) await readAnswer(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.trim()) onEvent(JSON.parse(line));
    }
  }
}
