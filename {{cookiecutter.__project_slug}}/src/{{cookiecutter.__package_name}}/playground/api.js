// The service's API as the playground uses it: JSON requests, a streamed turn, errors in words.
// Every request sends the credential the user gave, as any other client of the API does.

export class ApiError extends Error {
  // status: the HTTP status, or null when there was no answer (network failure, dropped stream,
  // or an `error` event that ended a stream). code: the `code` of the service's error body.
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Where the API's paths start: the page is at <root>/playground/, and <root> is "/" or the path
// prefix that a proxy in front serves the service under: the paths are resolved against the page.
const ROOT = new URL("../", document.baseURI);

export class Api {
  // credential: a function that returns the API key or JWT to send, or "" for none.
  constructor(credential) {
    this.credential = credential;
  }

  // The parsed JSON body of a successful answer (null for 204); throws ApiError otherwise.
  async request(method, path, body, signal) {
    const response = await this.send(method, path, body, signal);
    return response.status === 204 ? null : response.json();
  }

  // The events of one turn of POST process-streaming, as {event, data}, as they arrive.
  async *streamTurn(body, signal) {
    const response = await this.send("POST", "process-streaming", body, signal);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new EventParser();
    let ended = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const event of parser.push(value)) {
          ended = event.event === "done" || event.event === "error";
          yield event;
        }
      }
    } catch (error) {
      if (error.name === "AbortError") throw error; // the page stopped reading on purpose
    }
    // The connection closed before the last event: the service still finishes and stores the turn.
    if (!ended) throw new ApiError(null, "stream_dropped", "The connection dropped.");
  }

  // path: relative to the service's root, as "sessions" (never "/sessions": see ROOT).
  async send(method, path, body, signal) {
    const headers = body === undefined ? {} : { "Content-Type": "application/json" };
    const credential = this.credential();
    if (credential) headers.Authorization = `Bearer ${credential}`;
    let response;
    try {
      response = await fetch(new URL(path, ROOT), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(null, "network_error", error.message);
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }
}

async function errorOf(response) {
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  try {
    const { error } = await response.json();
    return new ApiError(response.status, error.code, error.message, retryAfter);
  } catch {
    // Not the service's JSON error: a proxy's, or uvicorn's plain 503 at its connection limit.
    return new ApiError(response.status, "http_error", response.statusText, retryAfter);
  }
}

// Reads text/event-stream: the text as it arrives in, whole events out (data decoded as JSON).
class EventParser {
  buffer = "";
  event = "message";
  data = [];

  push(text) {
    // A line ends at \n, \r\n or \r; a \r at the end of a chunk may be half of a \r\n.
    const lines = (this.buffer + text).split(/\r\n|\r(?!$)|\n/);
    this.buffer = lines.pop();
    const events = [];
    for (const line of lines) {
      if (line === "") {
        if (this.data.length) events.push({ event: this.event, data: JSON.parse(this.data.join("\n")) });
        this.event = "message";
        this.data = [];
      } else if (!line.startsWith(":")) {  // a line that starts with ":" is a comment (keep-alive)
        const [field, ...rest] = line.split(":");
        const value = rest.join(":").replace(/^ /, "");
        if (field === "event") this.event = value;
        if (field === "data") this.data.push(value);
      }
    }
    return events;
  }
}

const WORDS = {
  network_error: "The service cannot be reached. Is it running? Check the connection, then try again.",
  stream_dropped:
    "The connection dropped before the answer was complete. The service finishes the turn " +
    "anyway: open the conversation again in a moment to read it.",
  unauthorized: "The service did not accept this credential. Enter a valid API key or token.",
  session_busy:
    "This conversation is still answering another message (in another tab or window?). " +
    "Wait until it is done, then send again.",
  session_not_found: "This conversation does not exist any more: it may have been deleted elsewhere.",
  prompt_too_long: "The message is too long.",
  request_too_large: "The message is too long.",
  request_timeout: "The message took too long to reach the service. Check the connection, then send it again.",
  too_many_turns: "You are sending too many messages at once.",
  too_many_sessions: "You keep too many conversations: delete some first.",
  overloaded: "The service is busy with other conversations.",
  turn_cancelled: "Stopped: nothing of this message was stored.",
  model_error: "The model failed to answer. Nothing of this message was stored: send it again.",
  model_timeout: "The model took too long to answer. Nothing of this message was stored.",
  model_throttled: "The model provider is throttling requests.",
  database_unavailable: "The service cannot reach its database.",
  auth_unavailable: "The service cannot check credentials right now (its identity provider is unreachable).",
  turn_not_stored: "The answer could not be stored. Send the message again.",
  turn_outcome_unknown:
    "The database went away as the answer was stored: open the conversation again in a moment " +
    "to see whether it was kept before sending the message again.",
  interrupt_not_supported:
    "A tool asked for an approval that this service cannot ask for. Nothing of this message was stored.",
  internal_error: "The service failed; the failure has been logged.",
};

// What went wrong, for the user: words first, then the service's own message and status.
export function explain(error) {
  if (!(error instanceof ApiError)) return `Something went wrong in the page: ${error}`;
  const words = WORDS[error.code] ?? "The service refused the request.";
  const retry = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
  const fromService = !["network_error", "stream_dropped"].includes(error.code);
  const status = [error.status, error.code].filter(Boolean).join(" ");
  const detail = fromService ? ` (${status}: ${error.message})` : "";
  return words + retry + detail;
}
