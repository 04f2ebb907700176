// Sends messages to POST /chat through the Vercel AI SDK's own chat client, as `useChat` does,
// and prints the chat's messages as the SDK assembled them (JSON).
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
  }),
});

for (const text of process.argv.slice(2)) {
  await chat.sendMessage({ text });
  if (chat.status !== "ready") break;
}
console.log(
  JSON.stringify({ status: chat.status, error: chat.error?.message, messages: chat.messages }),
);
