import { AgentBackend } from "./agent-backend.js";
import { ChatView } from "./ui.js";

const view = new ChatView(document, new AgentBackend());
view.start().catch((err) => {
  const banner = document.getElementById("server-banner");
  banner.textContent = "Cannot reach your Gibberish agent: " + err.message;
  banner.hidden = false;
});
