// The Northwind Bank chat widget: one <script> tag on any page.
//
//   <script src="https://assistant.example/webhooks/web/widget.js"
//           data-customer-token="..."   (a JWT your website signs for its signed-in customer)
//           data-title="Northwind Bank" data-open="false" async></script>
//
// It talks to the Rasa server that served it (socket.io at /socket.io/),
// renders text, buttons, quick replies, a thumbs up / down on each answer,
// a typing indicator and the handoff state, and keeps the conversation
// across page reloads (the server-issued session id lives in localStorage;
// the server sends the history back). Without a token the visitor is a guest
// with a session id only the server can issue. Everything runs in a shadow root, so host-page
// styles and the widget's styles cannot clash.
import { io } from "socket.io-client";
import css from "./widget.css";

// Icons drawn as SVG (Material icons, Apache-2.0), so they show without an emoji font.
const THUMB = '<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true"><path fill="currentColor" d="M2 21h4V9H2v12zm20-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L13.17 1 6.59 7.59C6.22 7.95 6 8.45 6 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z"/></svg>';
const BUBBLE = '<svg viewBox="0 0 24 24" width="28" height="28" aria-hidden="true"><path fill="currentColor" d="M20 2H4c-1.1 0-2 .9-2 2v18l4-4h14c1.1 0 2-.9 2-2V4c0-1.1-.9-2-2-2zM6 9h12v2H6V9zm8 5H6v-2h8v2zm4-6H6V6h12v2z"/></svg>';

(function start() {
  const script =
    document.currentScript || document.querySelector('script[src*="/webhooks/web/widget.js"]');
  if (!script || window.__northwindChat) return; // one widget per page
  const source = new URL(script.src, window.location.href);
  const root = source.pathname.replace(/\/webhooks\/web\/widget\.js$/, "");
  const options = {
    server: source.origin,
    socketPath: script.dataset.socketPath || `${root}/socket.io`,
    customerToken: script.dataset.customerToken || null,
    title: script.dataset.title || "Chat with us",
    open: script.dataset.open === "true",
  };
  // The guest's session is stored apart from a signed-in customer's (whose
  // conversation the token decides), so a guest never resumes a customer's.
  const storageKey = () => `northwind-chat:${options.server}:${options.customerToken ? "signed" : "guest"}`;
  const store = {
    get: (key) => { try { return window.localStorage.getItem(`${storageKey()}:${key}`); } catch (e) { return null; } },
    set: (key, value) => { try { window.localStorage.setItem(`${storageKey()}:${key}`, value); } catch (e) { /* private mode */ } },
  };

  // ------------------------------------------------------------------ DOM
  const host = document.createElement("div");
  host.id = "northwind-chat";
  const shadow = host.attachShadow({ mode: "open" });
  shadow.innerHTML = `
    <style>${css}</style>
    <button class="launcher" type="button" aria-label="Open chat" aria-expanded="false">${BUBBLE}</button>
    <section class="panel" role="dialog" aria-label="" hidden>
      <header>
        <span class="title"></span>
        <span class="status"></span>
        <button class="close" type="button" aria-label="Close chat">×</button>
      </header>
      <div class="handoff" role="status" hidden></div>
      <ol class="log" aria-live="polite"></ol>
      <div class="typing" aria-label="The assistant is typing" hidden><span></span><span></span><span></span></div>
      <div class="quick"></div>
      <div class="offline" hidden>Reconnecting…</div>
      <form class="composer">
        <input name="message" type="text" autocomplete="off" placeholder="Type your message…" aria-label="Your message" maxlength="2000">
        <button type="submit">Send</button>
      </form>
    </section>`;
  const $ = (selector) => shadow.querySelector(selector);
  const panel = $(".panel");
  const launcher = $(".launcher");
  const log = $(".log");
  const input = $(".composer input");
  $(".title").textContent = options.title;
  panel.setAttribute("aria-label", options.title);

  function setOpen(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    launcher.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    store.set("open", open ? "1" : "0");
    if (open) input.focus();
  }
  launcher.addEventListener("click", () => setOpen(panel.hidden));
  $(".close").addEventListener("click", () => setOpen(false));

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function addCustomer(text) {
    const item = element("li", "msg user");
    item.appendChild(element("div", "text", text));
    log.appendChild(item);
    scrollDown();
  }

  function addRating(item, rating, rated) {
    const bar = element("div", "rating");
    bar.appendChild(element("span", "", "Helpful?"));
    const thumbs = [];
    for (const [choice, label] of [["up", "Yes, helpful"], ["down", "Not helpful"]]) {
      if (!rating[choice]) continue;
      const thumb = element("button", `thumb ${choice}`);
      thumb.innerHTML = THUMB;
      thumb.type = "button";
      thumb.setAttribute("aria-label", label);
      thumb.setAttribute("aria-pressed", String(rated === choice));
      thumb.disabled = Boolean(rated);
      thumb.addEventListener("click", () => {
        thumbs.forEach((t) => { t.disabled = true; });
        thumb.setAttribute("aria-pressed", "true");
        send(rating[choice], null); // a rating is not shown as a message
      });
      thumbs.push(thumb);
      bar.appendChild(thumb);
    }
    item.appendChild(bar);
  }

  function addBot(message) {
    const kind = message.agent ? "agent" : message.notice ? "system" : "assistant";
    const item = element("li", `msg bot ${kind === "assistant" ? "" : kind}`.trim());
    if (message.agent) item.appendChild(element("div", "author", `${message.agent} · Northwind Bank`));
    if (message.text) item.appendChild(element("div", "text", message.text));
    if (message.image) {
      const image = element("img");
      image.src = message.image;
      image.alt = "";
      item.appendChild(image);
    }
    // The thumbs rate the answer, so they sit right under it, before any suggestion.
    if (message.rating) addRating(item, message.rating, message.rated);
    if (message.buttons && message.buttons.length) {
      const group = element("div", "buttons");
      for (const button of message.buttons) {
        const choice = element("button", "choice", button.title);
        choice.type = "button";
        choice.addEventListener("click", () => {
          group.querySelectorAll("button").forEach((b) => { b.disabled = true; });
          choice.classList.add("chosen");
          send(button.payload, button.title);
        });
        group.appendChild(choice);
      }
      item.appendChild(group);
    }
    log.appendChild(item);
    showQuickReplies(message.quick_replies || []);
    scrollDown();
  }

  function showQuickReplies(replies) {
    const area = $(".quick");
    area.textContent = "";
    for (const reply of replies) {
      const chip = element("button", "", reply.title);
      chip.type = "button";
      chip.addEventListener("click", () => send(reply.payload, reply.title));
      area.appendChild(chip);
    }
  }

  function showHandoff(state) {
    const banner = $(".handoff");
    const status = (state && state.status) || "none";
    banner.classList.toggle("active", status === "active");
    if (status === "waiting") {
      banner.textContent = state.position
        ? `Waiting for an adviser: you're number ${state.position} in the queue.`
        : "Waiting for an adviser.";
    } else if (status === "active") {
      banner.textContent = `You're chatting with ${state.agent || "an adviser"}.`;
    }
    banner.hidden = status !== "waiting" && status !== "active";
    banner.dataset.status = status;
    $(".status").textContent = status === "active" ? "Adviser" : status === "waiting" ? "In queue" : "Assistant";
  }

  function setTyping(on) {
    $(".typing").hidden = !on;
    if (on) scrollDown();
  }

  // ------------------------------------------------------------- socket.io
  const socket = io(options.server, { path: options.socketPath, transports: ["websocket", "polling"] });
  let sessionId = store.get("session");
  // Messages written before the server confirmed the session wait here, so none is dropped.
  let confirmed = false;
  const pending = [];

  function emitMessage(payload) {
    socket.emit("user_uttered", { message: payload, metadata: { page: window.location.pathname } });
  }

  function send(payload, shownAs) {
    if (shownAs) addCustomer(shownAs);
    showQuickReplies([]);
    setTyping(true);
    if (confirmed) emitMessage(payload);
    else pending.push([payload, shownAs]);
  }

  function requestSession() {
    socket.emit("session_request", { session_id: sessionId, customer_token: options.customerToken });
  }

  socket.on("connect", () => {
    $(".offline").hidden = true;
    requestSession();
  });
  // The server did not believe the sign-in token (expired, say): carry on as a guest.
  socket.on("session_refused", (refusal) => {
    if (!options.customerToken) return;
    options.customerToken = null;
    sessionId = store.get("session");
    host.dataset.refused = (refusal && refusal.reason) || "refused";
    requestSession();
  });
  socket.on("disconnect", () => { confirmed = false; $(".offline").hidden = false; });
  socket.on("session_confirm", (session) => {
    sessionId = typeof session === "string" ? session : session && session.session_id;
    store.set("session", sessionId);
    host.dataset.session = sessionId;
    socket.emit("history_request", {});
  });
  socket.on("history", (history) => {
    log.textContent = "";
    const messages = (history && history.messages) || [];
    if (!messages.length) {
      addBot({ text: `Hi! I'm the ${options.title} assistant. Ask me about cards, payments, transfers or your account.`, notice: "welcome" });
    }
    for (const message of messages) {
      if (message.sender === "customer") addCustomer(message.text);
      else addBot(message);
    }
    const last = messages[messages.length - 1];
    if (!last || last.sender === "customer") showQuickReplies([]);
    showHandoff(history && history.handoff);
    host.dataset.ready = "true";
    confirmed = true;
    while (pending.length) {
      const [payload, shownAs] = pending.shift();
      if (shownAs) addCustomer(shownAs); // the history was drawn without it
      emitMessage(payload);
    }
  });
  socket.on("bot_uttered", (message) => addBot(message));
  socket.on("typing", (state) => setTyping(Boolean(state && state.on)));
  socket.on("handoff_state", (state) => showHandoff(state));

  $(".composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text, text);
  });

  document.body.appendChild(host);
  setOpen(options.open || store.get("open") === "1");
  window.__northwindChat = { socket, open: () => setOpen(true) };
})();
