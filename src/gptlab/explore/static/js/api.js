// Talking to the server, or, in an exported page, reading the answers saved in it.
//
// An exported page (gptlab explore --export) holds window.GPTLAB_EXPORT = {models, prompt,
// answers}: every answer the views need for its one prompt, under the key answerKey() makes.

export const exported = window.GPTLAB_EXPORT ?? null;

// The key an exported answer is saved under: the route and the request's settings that matter.
export function answerKey(route, body) {
  const parts = { ...body };
  delete parts.model;
  delete parts.prompt;
  const settings = Object.keys(parts).sort().map((k) => `${k}=${parts[k] ?? ""}`).join("&");
  return `${route}?${settings}`;
}

export async function api(route, body) {
  if (exported) {
    if (body.prompt !== exported.prompt) throw new Error("this exported page holds one prompt; run `gptlab explore` to try others");
    const answer = exported.answers[answerKey(route, body)];
    if (answer === undefined) throw new Error("this exported page did not save that view; run `gptlab explore` for the live page");
    if (answer.error) throw new Error(answer.error);
    // Every head's thumbnails are the same: the page saves them once, beside each head's pattern.
    return route === "attention" ? { ...exported.answers["attention?common"], ...answer } : answer;
  }
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
