// The playground page: the caller's conversations, one of them open, and a streamed turn.
// Everything shown comes from the API (api.js); text is always set as text, never as markup.

import { Api, ApiError, explain } from "./api.js";

// The credential lives in this tab's sessionStorage: gone when the tab closes.
const CREDENTIAL_ITEM = "playground-credential";
const $ = (id) => document.getElementById(id);
const api = new Api(() => sessionStorage.getItem(CREDENTIAL_ITEM) ?? "");

let sessionId = null; // the open conversation; null for a new one
let nextCursor = null; // the next page of the conversation list
let runningTurn = null; // the AbortController of the turn being read, if any
let loadingHistory = null; // the AbortController of the history being loaded, if any

// --- Errors and the credential ---

function showError(error) {
  if (error.name === "AbortError") return; // the user moved on; the turn goes on on the server
  if (error instanceof ApiError && error.status === 401) askForCredential(error);
  else $("error").textContent = explain(error);
}

function clearError() {
  $("error").textContent = "";
}

function askForCredential(error) {
  // No credential yet: the dialog explains itself. One refused: it says so.
  const refused = sessionStorage.getItem(CREDENTIAL_ITEM) !== null;
  $("credential-error").textContent = refused ? explain(error) : "";
  if (!$("credential-dialog").open) $("credential-dialog").showModal();
}

function useCredential(credential) {
  sessionStorage.setItem(CREDENTIAL_ITEM, credential);
  $("forget-credential").hidden = false;
  clearError();
  loadSessions().catch(showError);
}

function forgetCredential() {
  sessionStorage.removeItem(CREDENTIAL_ITEM);
  $("forget-credential").hidden = true;
  $("session-list").replaceChildren();
  newConversation();
  loadSessions().catch(showError); // asks again if the service needs one
}

// --- The list of conversations ---

async function loadSessions({ more = false } = {}) {
  const query = more && nextCursor ? `&cursor=${encodeURIComponent(nextCursor)}` : "";
  const page = await api.request("GET", `sessions?limit=20${query}`);
  const items = page.sessions.map(sessionItem);
  if (more) $("session-list").append(...items);
  else $("session-list").replaceChildren(...items);
  nextCursor = page.next_cursor;
  $("more-sessions").hidden = !nextCursor;
}

function sessionItem(session) {
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.sessionId = session.session_id;
  const id = document.createElement("span");
  id.className = "session-id";
  id.textContent = session.session_id.slice(0, 8);
  // The time it was started: the list is in that order, newest first.
  button.append(formatTime(session.created_at), id);
  button.title = session.session_id;
  button.disabled = runningTurn !== null; // see lockConversation
  if (session.session_id === sessionId) button.setAttribute("aria-current", "true");
  button.addEventListener("click", () => openSession(session.session_id).catch(showError));
  const item = document.createElement("li");
  item.append(button);
  return item;
}

function markCurrent() {
  for (const button of $("session-list").querySelectorAll("button")) {
    if (button.dataset.sessionId === sessionId) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

function formatTime(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// --- One conversation ---

function stopReading() {
  runningTurn?.abort();
  runningTurn = null;
  if (document.activeElement === $("stop")) $("prompt").focus(); // not lost with the button
  $("send").hidden = false;
  $("stop").hidden = true;
  $("stop").disabled = true;
  lockConversation(false);
}

// While a turn runs, the page stays on its conversation: leaving it (or forgetting the key, which
// starts a new one) would stop reading the answer, which the service still stores, unseen; and
// deleting it is refused. Stop ends the turn.
function lockConversation(locked) {
  const buttons =
    "#session-list button, #new-conversation, #delete-conversation, #forget-credential";
  for (const button of document.querySelectorAll(buttons)) button.disabled = locked;
}

function stopLoading() {
  loadingHistory?.abort();
  loadingHistory = null;
  $("send").disabled = false;
}

function newConversation() {
  stopReading();
  stopLoading();
  clearError();
  leaveSession();
  $("messages").replaceChildren();
  markCurrent();
  $("prompt").focus();
}

// No conversation open: the next message starts one.
function leaveSession() {
  sessionId = null;
  $("conversation-title").textContent = "New conversation";
  $("delete-conversation").hidden = true;
}

async function openSession(id) {
  newConversation();
  sessionId = id;
  markCurrent();
  $("conversation-title").textContent = `Conversation ${id.slice(0, 8)}`;
  $("delete-conversation").hidden = false;
  // The history comes a page at a time, until another conversation is opened (even this one
  // again). Nothing is sent before it is all shown, so that a new message comes after it.
  const load = (loadingHistory = new AbortController());
  $("send").disabled = true;
  try {
    let offset = 0;
    while (offset !== null) {
      const path = `sessions/${encodeURIComponent(id)}/history?limit=100&offset=${offset}`;
      const page = await api.request("GET", path, undefined, load.signal);
      page.messages.forEach(showStoredMessage);
      scrollToEnd();
      offset = page.next_offset;
    }
  } finally {
    if (loadingHistory === load) stopLoading();
  }
}

async function deleteConversation() {
  if (!confirm("Delete this conversation and all its messages?")) return;
  await api.request("DELETE", `sessions/${encodeURIComponent(sessionId)}`);
  newConversation();
  await loadSessions();
}

// --- Messages ---

// The bubble that text of `role` goes into: the last one if it is that role's, else a new one.
// (A turn with tools is stored as several messages; it shows as one answer.)
function bubbleFor(role) {
  const last = $("messages").lastElementChild;
  if (last?.dataset.role === role) return last;
  const bubble = document.createElement("article");
  bubble.className = `message ${role}`;
  bubble.dataset.role = role;
  const author = document.createElement("h3");
  author.className = "author";
  author.textContent = role === "user" ? "You" : "Agent";
  bubble.append(author);
  $("messages").append(bubble);
  return bubble;
}

function appendText(bubble, text) {
  let paragraph = bubble.lastElementChild;
  if (!paragraph?.classList.contains("text")) {
    paragraph = document.createElement("p");
    paragraph.className = "text";
    bubble.append(paragraph);
  }
  paragraph.append(text);
}

// The model is called again: the text it streamed since its last tool call is withdrawn.
function withdrawText(bubble) {
  if (bubble.lastElementChild?.classList.contains("text")) bubble.lastElementChild.remove();
}

function scrollToEnd() {
  $("messages").scrollTop = $("messages").scrollHeight;
}

// Whether the end of the conversation is in view (give or take a few pixels): an answer coming
// in scrolls along only then, so that someone who scrolled up to read is left there.
function atEnd() {
  const messages = $("messages");
  return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 20;
}

function showToolCall(bubble, id, name, input) {
  const call = document.createElement("p");
  call.className = "tool";
  call.dataset.toolUseId = id;
  const code = document.createElement("code");
  code.textContent = `${name}(${JSON.stringify(input)})`;
  const status = document.createElement("span");
  status.className = "tool-status";
  status.textContent = "running…";
  call.append("Tool ", code, " ", status);
  bubble.append(call);
}

function showToolResult(id, status) {
  const call = [...$("messages").querySelectorAll(".tool")].find((e) => e.dataset.toolUseId === id);
  if (!call) return; // its call is older than the history shown
  call.querySelector(".tool-status").textContent = status === "success" ? "done" : `failed (${status})`;
  call.classList.add(status);
}

function showStoredMessage({ role, content }) {
  for (const block of content) {
    if (block.text !== undefined) appendText(bubbleFor(role), block.text);
    if (block.toolUse) {
      const { toolUseId, name, input } = block.toolUse;
      showToolCall(bubbleFor(role), toolUseId, name, input);
    }
    if (block.toolResult) showToolResult(block.toolResult.toolUseId, block.toolResult.status);
  }
}

// --- A turn ---

async function send(prompt) {
  stopReading();
  clearError();
  const question = bubbleFor("user");
  appendText(question, prompt);
  const answer = bubbleFor("assistant");
  answer.setAttribute("aria-busy", "true");
  scrollToEnd();
  const turn = (runningTurn = new AbortController());
  // One turn at a time from this page: Stop instead of Send, usable once the turn has started.
  if (document.activeElement === $("send")) $("prompt").focus(); // not lost with the button
  $("send").hidden = true;
  $("stop").hidden = false;
  lockConversation(true);
  let created = false;
  try {
    const body = sessionId ? { prompt, session_id: sessionId } : { prompt };
    for await (const { event, data } of api.streamTurn(body, turn.signal)) {
      const following = atEnd();
      if (event === "session" && data.session_id !== sessionId) {
        created = true;
        sessionId = data.session_id;
        $("conversation-title").textContent = `Conversation ${sessionId.slice(0, 8)}`;
        $("delete-conversation").hidden = false;
      }
      if (event === "session") $("stop").disabled = false;
      if (event === "text") appendText(answer, data.text);
      if (event === "tool_use") showToolCall(answer, data.id, data.name, data.input);
      if (event === "tool_result") showToolResult(data.id, data.status);
      if (event === "retry") withdrawText(answer);
      if (event === "error") throw new ApiError(null, data.code, data.message);
      if (following) scrollToEnd();
    }
  } catch (error) {
    // Nothing of a failed turn is stored: take it off the page and give the prompt back.
    // A dropped stream is different: the service goes on with the turn and stores it; and a
    // turn whose save the database never confirmed may be stored: neither is to be sent again.
    const mayBeStored = ["stream_dropped", "turn_outcome_unknown"].includes(error.code);
    if (!mayBeStored && error.name !== "AbortError") {
      question.remove();
      answer.remove();
      if (!$("prompt").value) $("prompt").value = prompt;
      if (created) leaveSession(); // the service deleted the session the turn created
    }
    throw error;
  } finally {
    answer.removeAttribute("aria-busy");
    if (runningTurn === turn) stopReading();
    if (created) loadSessions().catch(showError);
  }
}

// Stop the running turn: the service stores nothing of it and frees the conversation at once;
// its stream then ends with turn_cancelled, and the prompt comes back to be edited or sent again.
async function stopTurn() {
  $("prompt").focus(); // where the prompt comes back; Stop is disabled, then hidden
  $("stop").disabled = true;
  try {
    await api.request("POST", `sessions/${encodeURIComponent(sessionId)}/cancel`);
  } catch (error) {
    if (error.status === 404) return; // the turn failed first, and its new session with it
    $("stop").disabled = false; // the turn goes on: Stop again
    throw error;
  }
}

function submit(event) {
  event.preventDefault();
  const prompt = $("prompt").value;
  if (!prompt.trim() || runningTurn || loadingHistory) return;
  $("prompt").value = "";
  send(prompt).catch(showError);
}

// --- Wiring ---

$("composer").addEventListener("submit", submit);
$("prompt").addEventListener("keydown", (event) => {
  // Enter sends; Shift+Enter is a new line; Enter that completes an IME composition is neither.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => stopTurn().catch(showError));
$("new-conversation").addEventListener("click", newConversation);
$("more-sessions").addEventListener("click", () => loadSessions({ more: true }).catch(showError));
$("delete-conversation").addEventListener("click", () => deleteConversation().catch(showError));
$("forget-credential").addEventListener("click", forgetCredential);
$("credential-form").addEventListener("submit", () => {
  useCredential($("credential").value.trim());
  $("credential").value = "";
});
$("credential-dialog").addEventListener("cancel", () => {
  $("error").textContent = "The service answers nothing without a credential: send a message or " +
    "reload the page to enter one.";
});

$("forget-credential").hidden = !sessionStorage.getItem(CREDENTIAL_ITEM);
loadSessions().catch(showError); // a 401 here means the service wants a credential
$("prompt").focus();
