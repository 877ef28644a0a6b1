// The server, as the page talks to it: the OpenAI routes, /extras/lampe and the page's /ui routes.
// Paths are relative to the page, so a server behind a proxy prefix (--root_path) works too.

const KEY_STORAGE = "pylampe.key";
const REQUEST_ID_HEADER = "X-Pylampe-Request";

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A fresh id for one request, so that Stop stops that request and no other client's. */
export function requestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Api {
  /** ``askKey()`` resolves to the API key the user typed (the server said 401). */
  constructor(askKey) {
    this.askKey = askKey;
    this.key = sessionStorage.getItem(KEY_STORAGE) || "";
  }

  headers(extra = {}) {
    return this.key ? { Authorization: `Bearer ${this.key}`, ...extra } : extra;
  }

  /** fetch(), asking for the API key and trying again while the server answers 401. */
  async fetch(path, options = {}) {
    for (;;) {
      const response = await fetch(path, { ...options, headers: this.headers(options.headers) });
      if (response.status !== 401) return response;
      this.key = await this.askKey();
      sessionStorage.setItem(KEY_STORAGE, this.key);
    }
  }

  async json(path, options = {}) {
    const response = await this.fetch(path, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw errorOf(response.status, body);
    return body;
  }

  models() { return this.json("v1/models"); }

  lampe() { return this.json("extras/lampe"); }

  progress() { return this.json("ui/progress"); }

  stop(id) { return this.json("ui/stop", { method: "POST", headers: { [REQUEST_ID_HEADER]: id } }); }

  /** Upload ``file`` for reading; resolves to what was read (see server/web.py). */
  readDocument(file, { model, maxTokens, id, signal }) {
    const query = new URLSearchParams({ name: file.name });
    if (model) query.set("model", model);
    if (maxTokens) query.set("max_tokens", String(maxTokens));
    return this.json(`ui/documents?${query}`, {
      method: "POST", body: file, signal,
      headers: { "Content-Type": "application/octet-stream", [REQUEST_ID_HEADER]: id },
    });
  }

  /** Stream a chat completion; ``onText(piece)`` for each piece; resolves to the finish reason. */
  async chat(body, { id, signal, onText }) {
    const response = await this.fetch("v1/chat/completions", {
      method: "POST", signal, body: JSON.stringify({ ...body, stream: true }),
      headers: { "Content-Type": "application/json", [REQUEST_ID_HEADER]: id },
    });
    if (!response.ok) throw errorOf(response.status, await response.json().catch(() => ({})));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let finish = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return finish;
      buffer += value;
      const events = buffer.split(/\r?\n\r?\n/);
      buffer = events.pop();
      for (const event of events) {
        const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return finish;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk.error.message, chunk.error.code);
        const choice = chunk.choices && chunk.choices[0];
        if (!choice) continue;
        if (choice.delta && choice.delta.content) onText(choice.delta.content);
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
  }
}

function errorOf(status, body) {
  const error = body && body.error;
  const message = (error && error.message) || (body && body.detail) || `HTTP ${status}`;
  return new ApiError(status, typeof message === "string" ? message : JSON.stringify(message), error && error.code);
}
