// crmhub's panel inside a CRM: the customer behind the open record, their timeline on every channel,
// identity suggestions to decide and a reply box. Text from customers is only ever set as textContent.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("crmhub-config").textContent);
  const api = config.api;
  const headers = { "Authorization": "Bearer " + config.session };
  const $ = (id) => document.getElementById(id);
  let person = null, before = null;

  function element(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  async function call(method, path, body, extra) {
    const init = { method, headers: Object.assign({}, headers, extra || {}) };
    if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
    const answer = await fetch(api + path, init);
    const data = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new Error(data.detail || ("crmhub answered " + answer.status));
    return data;
  }

  function fail(error) {
    $("error").hidden = false;
    $("error").textContent = error.message || String(error);
    $("panel").setAttribute("aria-busy", "false");
  }

  async function recordId() {
    if (config.record) return config.record;  // named by the signed launch (Salesforce Canvas)
    if (config.crm === "zendesk" && window.ZAFClient) {
      const client = window.ZAFClient.init();
      const data = await client.get("ticket.id");
      return String(data["ticket.id"]);
    }
    throw new Error("crmhub cannot tell which record is open");
  }

  function showPerson(view) {
    person = view;
    $("who").textContent = "Customer " + view.id;
    const ids = $("identities"); ids.replaceChildren();
    for (const identity of view.identities) ids.append(element("li", identity.kind + " " + (identity.display || identity.value)));
    const pick = $("conversation"); pick.replaceChildren();
    for (const c of view.conversations) {
      if ([...pick.options].some((o) => o.value === c.key)) continue;
      const option = element("option", c.channel + (c.open ? " (open)" : "") + " · " + c.key);
      option.value = c.key;
      pick.append(option);
    }
    $("compose").hidden = pick.options.length === 0;
  }

  function showTimeline(page, append) {
    const list = $("timeline");
    if (!append) list.replaceChildren();
    for (const item of page.items) {
      const row = element("li", undefined, item.direction);
      row.dataset.kind = item.kind;
      row.dataset.status = item.status;
      row.append(element("div", item.text, "text"));
      const meta = item.channel + " · " + item.direction + " · " + new Date(item.at).toLocaleString() +
        " · " + item.status + (item.author ? " · " + item.author : "") + (item.error ? " · " + item.error : "");
      row.append(element("div", meta, "meta status-" + item.status));
      list.append(row);
    }
    before = page.next;
    $("more").hidden = !before;
  }

  function showSuggestions(data) {
    const section = $("suggestions"), list = section.querySelector("ul");
    list.replaceChildren();
    for (const s of data.suggestions) {
      const row = element("li", s.sender.kind + " " + s.sender.display + " says they are " + s.claimed.kind + " " +
        s.claimed.display);
      row.dataset.suggestion = s.id;
      for (const [label, verb] of [["Same customer", "confirm"], ["Not them", "reject"]]) {
        const button = element("button", label);
        button.type = "button";
        button.dataset.action = verb;
        button.addEventListener("click", () => decide(s.id, verb).catch(fail));
        row.append(button);
      }
      list.append(row);
    }
    section.hidden = data.suggestions.length === 0;
  }

  async function refresh() {
    showPerson(await call("GET", "/persons/" + person.id));
    showTimeline(await call("GET", "/persons/" + person.id + "/timeline?limit=30"), false);
    showSuggestions(await call("GET", "/persons/" + person.id + "/suggestions"));
  }

  async function decide(id, verb) {
    const done = await call("POST", "/suggestions/" + id + "/" + verb);
    $("sent").textContent = done.result;
    await refresh();
  }

  async function send() {
    const text = $("text").value.trim();
    if (!text) return;
    $("send").disabled = true;
    try {
      const key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
      const queued = await call("POST", "/persons/" + person.id + "/replies",
        { conversation: $("conversation").value, text }, { "Idempotency-Key": key });
      $("text").value = "";
      $("sent").textContent = "Reply queued on " + queued.channel + " (" + queued.status + ")";
      await refresh();
    } finally {
      $("send").disabled = false;
    }
  }

  async function start() {
    const record = await recordId();
    showPerson(await call("GET", "/records/" + encodeURIComponent(config.crm) + "/" + encodeURIComponent(record)));
    await refresh();
    $("send").addEventListener("click", () => send().catch(fail));
    $("more").addEventListener("click", () =>
      call("GET", "/persons/" + person.id + "/timeline?limit=30&before=" + encodeURIComponent(before))
        .then((page) => showTimeline(page, true)).catch(fail));
    $("panel").setAttribute("aria-busy", "false");
  }

  start().catch(fail);
})();
