// Sends messages to POST /chat through the Vercel AI SDK's own chat client, as `useChat` does
// with the transport the README shows, and prints the chat's messages as the SDK assembled them,
// then (with --regenerate) what asking to regenerate the last reply came to (JSON).
//
//   CHAT_URL=http://127.0.0.1:8000/chat CHAT_API_KEY=... CHAT_ID=... node chat.mjs "Hi" "Bye"
import { AbstractChat, DefaultChatTransport } from "ai";

// What `useChat` (@ai-sdk/react) keeps in React state, kept in memory instead.
class MemoryChatState {
  status = "ready";
  error = undefined;
  messages = [];
  pushMessage = (message) => {
    this.messages = [...this.messages, message];
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = this.messages.map((old, at) => (at === index ? this.snapshot(message) : old));
  };
  snapshot = (thing) => structuredClone(thing);
}

class Chat extends AbstractChat {
  constructor(init) {
    super({ ...init, state: new MemoryChatState() });
  }
}

const chat = new Chat({
  id: process.env.CHAT_ID,
  transport: new DefaultChatTransport({
    api: process.env.CHAT_URL,
    headers: { Authorization: `Bearer ${process.env.CHAT_API_KEY}` },
    // As the README shows it: only the new message, with what says a regenerate or an edit.
    prepareSendMessagesRequest: ({ id, messages, trigger, messageId }) => ({
      body: { id, messages: messages.slice(-1), trigger, messageId },
    }),
  }),
});

const texts = process.argv.slice(2).filter((argument) => argument !== "--regenerate");
for (const text of texts) {
  await chat.sendMessage({ text });
  if (chat.status !== "ready") break;
}
const sent = { status: chat.status, error: chat.error?.message, messages: chat.messages };
let regenerated = null;
if (process.argv.includes("--regenerate")) {
  await chat.regenerate();
  regenerated = { status: chat.status, error: chat.error?.message };
}
console.log(JSON.stringify({ ...sent, regenerated }));
