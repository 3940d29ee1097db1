// Plays Zendesk's ZAF SDK inside the plugin's frame: `client.get` asks the parent page (the host playing Zendesk)
// over postMessage, as the real SDK does, and resolves with what it answers.
window.ZAFClient = {
  init() {
    let next = 0;
    const waiting = {};
    window.addEventListener("message", (event) => {
      const m = event.data;
      if (m && m.zaf === "result" && waiting[m.id]) { waiting[m.id](m.result); delete waiting[m.id]; }
    });
    return {
      get(paths) {
        const id = ++next;
        const list = Array.isArray(paths) ? paths : [paths];
        return new Promise((resolve) => {
          waiting[id] = resolve;
          window.parent.postMessage({ zaf: "get", id, paths: list }, "*");
        });
      },
    };
  },
};
