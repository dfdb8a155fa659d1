// The agent inbox: sign in, pick a conversation, read it, write to the customer, hand it back.
// Plain JavaScript served as is (no build step); it only talks to /webhooks/inbox/.
(function inbox() {
  const base = "/webhooks/inbox";
  const $ = (id) => document.getElementById(id);
  let current = null; // conversation id on screen
  let me = null;

  async function call(path, body) {
    const init = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const answer = await fetch(`${base}${path}`, { credentials: "same-origin", ...init });
    const data = await answer.json().catch(() => ({}));
    if (answer.status === 401 && path !== "/login") showLogin();
    if (!answer.ok) throw new Error(data.error || `request failed (${answer.status})`);
    return data;
  }

  function text(tag, value, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.textContent = value == null ? "" : String(value);
    return node;
  }

  function since(ts) {
    const minutes = Math.max(0, Math.round((Date.now() / 1000 - ts) / 60));
    return minutes < 1 ? "just now" : `${minutes} min`;
  }

  function showLogin() {
    $("login").hidden = false;
    $("app").hidden = true;
    $("logout").hidden = true;
    $("who").textContent = "";
  }

  function showApp(name) {
    me = name;
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = `Signed in as ${name}`;
    refreshList();
  }

  async function refreshList() {
    if (!me) return;
    let data;
    try { data = await call("/api/conversations"); } catch (e) { return; }
    const list = $("list");
    list.textContent = "";
    $("list-empty").hidden = data.conversations.length > 0;
    for (const c of data.conversations) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.conversation = c.conversation_id;
      button.setAttribute("aria-current", String(c.conversation_id === current));
      const badge = text("span", c.status === "waiting" ? `#${c.position} waiting` : `with ${c.agent}`, `badge ${c.status}`);
      button.append(badge, text("b", c.customer_id || c.conversation_id), document.createElement("br"),
        text("span", `${c.channel || "?"} · ${c.reason} · ${since(c.created_at)}`, "meta"));
      button.addEventListener("click", () => open(c.conversation_id));
      item.appendChild(button);
      list.appendChild(item);
    }
  }

  function render(detail) {
    current = detail.conversation_id;
    const h = detail.handoff;
    $("title").textContent = `${detail.customer.id || detail.conversation_id} · ${detail.channel || ""} · ${h.status}` +
      (h.status === "waiting" && h.position ? ` (#${h.position})` : "") + (h.agent ? ` · ${h.agent}` : "");
    $("take").hidden = h.status !== "waiting";
    $("handback").hidden = h.status === "closed";
    $("reply").hidden = h.status === "closed";
    const transcript = $("transcript");
    transcript.textContent = "";
    for (const m of detail.transcript) {
      const item = text("li", "", m.sender);
      const who = m.sender === "agent" ? m.agent : m.sender === "customer" ? "Customer" : m.sender === "assistant" ? "Assistant" : "";
      if (who) item.appendChild(text("span", who, "who"));
      item.appendChild(document.createTextNode(m.text || ""));
      const offered = (m.buttons || []).concat(m.quick_replies || []).map((b) => b.title);
      if (offered.length) item.appendChild(text("span", `\nOffered: ${offered.join(" · ")}`, "meta"));
      if (m.rated) item.appendChild(text("span", `\nRated ${m.rated === "up" ? "helpful" : "not helpful"} by the customer`, "meta"));
      transcript.appendChild(item);
    }
    transcript.scrollTop = transcript.scrollHeight;
    const customer = $("customer");
    customer.textContent = "";
    const facts = document.createElement("dl");
    const rows = [["Id", detail.customer.id], ["Known", detail.customer.known ? "yes" : "no"]];
    if (detail.customer.known) rows.push(["Segment", detail.customer.segment], ["Age band", detail.customer.age_band]);
    const ratings = detail.customer.ratings || { up: 0, down: 0 };
    rows.push(["Ratings given", `${ratings.up} helpful · ${ratings.down} not helpful`]);
    for (const [k, v] of rows) facts.append(text("dt", k), text("dd", v == null ? "—" : v));
    customer.appendChild(facts);
    for (const r of (detail.customer.recent || []).slice(0, 5)) customer.appendChild(text("div", `${r.kind}: ${r.what || ""}`, "meta"));
    const guesses = $("guesses");
    guesses.textContent = "";
    if (!detail.guesses.length) guesses.appendChild(text("p", "No typed messages yet.", "empty"));
    for (const g of detail.guesses) {
      const box = text("div", "", "guess");
      box.appendChild(text("div", `“${g.text}”`));
      box.appendChild(text("div", g.intents.map((i) => `${i.name} ${(i.confidence * 100).toFixed(0)}%`).join(" · "), "meta"));
      for (const a of g.answers) {
        const use = text("button", `${a.answer} (${a.score})`);
        use.type = "button";
        use.title = `Past question: ${a.question}`;
        use.addEventListener("click", () => { $("text").value = a.answer; $("text").focus(); });
        box.appendChild(use);
      }
      guesses.appendChild(box);
    }
  }

  async function open(id, quietly) {
    if (!quietly) $("action-error").textContent = "";
    try { render(await call(`/api/conversations/${encodeURIComponent(id)}`)); } catch (e) { $("action-error").textContent = e.message; }
    if (!quietly) refreshList();
  }

  async function act(action, body) {
    if (!current) return;
    $("action-error").textContent = "";
    try {
      render(await call(`/api/conversations/${encodeURIComponent(current)}/${action}`, body || {}));
    } catch (e) { $("action-error").textContent = e.message; }
    refreshList();
  }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      const data = await call("/login", { name: $("name").value, password: $("password").value });
      $("password").value = "";
      showApp(data.name);
    } catch (e) { $("login-error").textContent = e.message; }
  });
  $("logout").addEventListener("click", async () => { await call("/logout", {}).catch(() => {}); me = null; showLogin(); });
  $("take").addEventListener("click", () => act("take"));
  $("handback").addEventListener("click", () => act("handback"));
  $("reply").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("text").value.trim();
    if (!value) return;
    $("text").value = "";
    act("reply", { text: value });
  });

  // New customers and new messages appear without reloading.
  setInterval(() => { refreshList(); if (current && document.activeElement !== $("text")) open(current, true); }, 3000);
  call("/api/me").then((data) => showApp(data.name)).catch(() => showLogin());
})();
