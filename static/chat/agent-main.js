// @ts-check
// The agent page's entry point (static/chat.html): the room list and the chat view over the
// agent's JSON API.
import { AgentBackend } from "./agent-backend.js";
import { RoomList } from "./rooms.js";
import { ChatView } from "./ui.js";

const backend = new AgentBackend();
const view = new ChatView(document, backend);
const rooms = new RoomList(document, backend, view);
rooms.start().catch((err) => {
  const banner = document.getElementById("server-banner");
  if (!banner) throw err;
  banner.textContent = "Cannot reach your Gibberish agent: " + err.message;
  banner.hidden = false;
});
