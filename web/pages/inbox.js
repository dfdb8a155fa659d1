// The agent inbox: sign in, pick a conversation, read it, write to the customer, hand it back.
// Supervisors also see the audit log; admins also manage accounts.
// Plain JavaScript served as is (no build step); it only talks to /webhooks/inbox/.
(function inbox() {
  const base = "/webhooks/inbox";
  const $ = (id) => document.getElementById(id);
  const ROLES = ["agent", "supervisor", "admin"];
  let current = null; // conversation id on screen
  let me = null; // {username, name, role, csrf_token} from the server
  let oldestAudit = null;
  let draftFrom = null; // {source, id} of the draft inserted into the reply box, sent with the reply
  let draftsShown = null; // "<conversation>|<messages>": the drafts on screen are for this state

  async function call(path, body) {
    // Every change carries the session's CSRF token; the server refuses it otherwise.
    const init = body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": (me && me.csrf_token) || "" },
      body: JSON.stringify(body),
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

  function can(role) { return me && ROLES.indexOf(me.role) >= ROLES.indexOf(role); }

  function showLogin() {
    me = null;
    $("login").hidden = false;
    for (const id of ["app", "audit", "accounts", "logout", "show-conversations", "show-audit", "show-analytics", "show-segments", "show-onboarding", "show-accounts"]) $(id).hidden = true;
    $("who").textContent = "";
  }

  function showApp(who) {
    me = who;
    $("login").hidden = true;
    $("logout").hidden = false;
    $("who").textContent = `Signed in as ${who.name} (${who.role})`;
    $("show-audit").hidden = !can("supervisor");
    $("show-analytics").hidden = !can("supervisor");
    $("show-segments").hidden = !can("supervisor");
    $("show-onboarding").hidden = !can("supervisor");
    $("show-accounts").hidden = !can("admin");
    show("app");
  }

  function show(view) {
    $("app").hidden = view !== "app";
    $("audit").hidden = view !== "audit";
    $("accounts").hidden = view !== "accounts";
    $("show-conversations").hidden = view === "app";
    if (view === "app") refreshList();
    if (view === "audit") { $("audit-rows").textContent = ""; oldestAudit = null; loadAudit(); }
    if (view === "accounts") loadAccounts();
  }

  async function loadAudit() {
    let data;
    try { data = await call(`/api/audit?limit=100${oldestAudit ? `&before=${oldestAudit}` : ""}`); } catch (e) { return; }
    for (const r of data.entries) {
      const row = document.createElement("tr");
      for (const value of [new Date(r.ts * 1000).toLocaleString(), r.actor, r.action, r.target, r.client,
        r.detail && Object.keys(r.detail).length ? JSON.stringify(r.detail) : ""]) row.appendChild(text("td", value));
      $("audit-rows").appendChild(row);
      oldestAudit = r.id;
    }
    $("audit-older").hidden = data.entries.length < 100;
  }

  async function loadAccounts() {
    let data;
    try { data = await call("/api/accounts"); } catch (e) { $("account-error").textContent = e.message; return; }
    const rows = $("account-rows");
    rows.textContent = "";
    for (const a of data.accounts) {
      const row = document.createElement("tr");
      for (const value of [a.username, a.display_name, a.role, a.disabled ? "disabled" : "enabled"]) row.appendChild(text("td", value));
      const tools = document.createElement("td");
      if (!a.disabled && a.username !== me.username) {
        for (const [label, change] of [["Reset password", "reset"], ["Disable", "disable"]]) {
          const button = text("button", label);
          button.type = "button";
          button.addEventListener("click", () => changeAccount(a.username, change));
          tools.appendChild(button);
        }
      }
      row.appendChild(tools);
      rows.appendChild(row);
    }
  }

  async function changeAccount(username, change) {
    $("account-error").textContent = "";
    $("account-secret").textContent = "";
    try {
      const data = await call(`/api/accounts/${encodeURIComponent(username)}/${change}`, {});
      if (data.password) showSecret(username, data.password);
    } catch (e) { $("account-error").textContent = e.message; }
    loadAccounts();
  }

  function showSecret(username, password) {
    const box = $("account-secret");
    box.textContent = `Password for ${username} (shown only now): `;
    box.appendChild(text("span", password, "secret"));
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
        text("span", `${c.channel || "?"} · ${c.reason} · ${since(c.created_at)}` +
          (c.sentiment ? ` · reads ${c.sentiment.label} (${Math.round(c.sentiment.negative * 100)}% negative)` : ""), "meta"));
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
        use.addEventListener("click", () => { $("text").value = a.answer; draftFrom = null; $("text").focus(); });
        box.appendChild(use);
      }
      guesses.appendChild(box);
    }
  }

  // Agent assist: the best three drafts for the customer's latest message, their sentiment and profile.
  async function loadDrafts(detail) {
    const key = `${detail.conversation_id}|${detail.transcript.length}|${detail.handoff.status}`;
    if (key === draftsShown) return;
    draftsShown = key;
    let data;
    try { data = await call(`/api/conversations/${encodeURIComponent(detail.conversation_id)}/drafts`); } catch (e) { return; }
    if (data.conversation_id !== current) return;
    const panel = $("assist");
    panel.textContent = "";
    panel.appendChild(text("div", data.profile_summary, "meta profile-summary"));
    if (data.sentiment && data.sentiment.label) {
      const confidence = data.sentiment.confidence == null ? "" : ` (${Math.round(data.sentiment.confidence * 100)}%)`;
      panel.appendChild(text("div", `Sentiment: ${data.sentiment.label}${confidence}`, "meta sentiment"));
    }
    if (!data.drafts.length) { panel.appendChild(text("p", "No drafts for this conversation yet.", "empty")); return; }
    panel.appendChild(text("div", `For: “${data.message}”`, "meta"));
    for (const d of data.drafts) {
      const box = text("div", "", "draft");
      box.dataset.source = d.source;
      box.dataset.id = d.id;
      box.appendChild(text("div", `${d.source === "domain" ? "Assistant's answer" : "Past answer"} · score ${d.score}`, "meta"));
      box.appendChild(text("div", `Question: ${d.question || "—"}`, "meta question"));
      box.appendChild(text("p", d.text));
      const use = text("button", "Insert");
      use.type = "button";
      use.addEventListener("click", () => {
        $("text").value = d.text;
        draftFrom = { source: d.source, id: d.id };
        $("text").focus();
      });
      box.appendChild(use);
      panel.appendChild(box);
    }
  }

  async function open(id, quietly) {
    if (!quietly) $("action-error").textContent = "";
    if (id !== current) draftFrom = null; // a draft belongs to its conversation
    try {
      const detail = await call(`/api/conversations/${encodeURIComponent(id)}`);
      render(detail);
      loadDrafts(detail);
    } catch (e) { $("action-error").textContent = e.message; }
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
      const data = await call("/login", { username: $("username").value, password: $("password").value });
      $("password").value = "";
      showApp(data);
    } catch (e) { $("login-error").textContent = e.message; }
  });
  $("oidc").addEventListener("click", () => { window.location.href = `${base}/oidc/start`; });
  $("logout").addEventListener("click", async () => { await call("/logout", {}).catch(() => {}); showLogin(); });
  $("show-conversations").addEventListener("click", () => show("app"));
  $("show-audit").addEventListener("click", () => show("audit"));
  $("show-accounts").addEventListener("click", () => show("accounts"));
  $("audit-older").addEventListener("click", loadAudit);
  $("add-account").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("account-error").textContent = "";
    $("account-secret").textContent = "";
    const username = $("new-username").value.trim();
    try {
      const data = await call("/api/accounts", { username, display_name: $("new-display").value.trim() || null, role: $("new-role").value });
      showSecret(data.account.username, data.password);
      $("new-username").value = "";
      $("new-display").value = "";
    } catch (e) { $("account-error").textContent = e.message; }
    loadAccounts();
  });
  $("text").addEventListener("input", () => { if (!$("text").value.trim()) draftFrom = null; });
  $("take").addEventListener("click", () => act("take"));
  $("handback").addEventListener("click", () => act("handback"));
  $("reply").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("text").value.trim();
    if (!value) return;
    $("text").value = "";
    const body = draftFrom ? { text: value, draft: draftFrom } : { text: value };
    draftFrom = null;
    act("reply", body);
  });

  // New customers and new messages appear without reloading.
  setInterval(() => {
    if (!me || $("app").hidden) return;
    refreshList();
    if (current && document.activeElement !== $("text")) open(current, true);
  }, 3000);
  const signinError = new URLSearchParams(window.location.search).get("signin_error");
  if (signinError) $("login-error").textContent = signinError;
  fetch(`${base}/signin-options`).then((r) => r.json()).then((o) => { $("oidc").hidden = !o.oidc; }).catch(() => {});
  call("/api/me").then(showApp).catch(() => showLogin());
})();
