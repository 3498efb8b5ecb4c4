// Live updates for the board and the task page.
//
// One WebSocket per page. It asks the server to replay everything after the last event id it has
// seen, so a dropped connection, a restarted server or a replica going away loses nothing; a page
// that falls behind is caught up by the server from the event table ("catchup" … "live"). Events
// only say *that* something changed; the page then fetches itself and swaps the regions whose key
// changed, so what is shown is always what the server renders (and works the same without JS).

document.documentElement.classList.add("js");
const root = document.querySelector("[data-live]");
const statusEl = document.getElementById("live-status");
const announcer = document.getElementById("announcer");
const badge = document.getElementById("review-badge");
const soundToggle = document.getElementById("sound-toggle");
const baseTitle = document.title;
const freshReview = new Set();
let reviewCount = 0;

const sound = setupSound();
if (badge) badge.addEventListener("click", clearBadge);
if (root) connect(root);

function connect(root) {
  let lastId = Number(root.dataset.lastEventId || 0);
  // The server also resends events from just before `after` (a lower id can commit later); the page
  // as rendered already shows those up to here, so they refresh quietly instead of signalling.
  const renderedUpTo = lastId;
  const seen = new Set();
  let delay = 500;
  let timer = null;
  let running = false;
  let again = false;

  const open = () => {
    const url = new URL(root.dataset.live, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("after", String(lastId));
    const ws = new WebSocket(url);
    ws.addEventListener("open", () => {
      delay = 500;
      setStatus("live", "Live");
    });
    ws.addEventListener("message", (message) => {
      const msg = JSON.parse(message.data);
      if (msg.type === "event") onEvent(msg);
      else if (msg.type === "catchup") setStatus("retry", "Catching up…");
      else if (msg.type === "live") setStatus("live", "Live");
      else if (msg.type === "reload") location.reload(); // servers from before catch-up
    });
    ws.addEventListener("close", (event) => {
      if (event.code === 4001) return location.reload(); // servers from before catch-up
      if (event.code === 1008) return setStatus("off", "Signed out: live updates off");
      setStatus("retry", "Reconnecting…");
      // Backoff with jitter, so a restarted server is not met by every browser at once.
      setTimeout(open, delay * (0.5 + Math.random()));
      delay = Math.min(delay * 2, 15000);
    });
  };

  const onEvent = (event) => {
    if (seen.has(event.id)) return;
    seen.add(event.id);
    lastId = Math.max(lastId, event.id);
    root.dataset.lastEventId = String(lastId);
    if (event.to_status === "REVIEW" && event.id > renderedUpTo) signalReview(event);
    if (!timer) timer = setTimeout(() => ((timer = null), refreshSoon()), 120);
  };

  // One refresh at a time; events during a refresh cause exactly one more.
  const refreshSoon = async () => {
    if (running) return void (again = true);
    running = true;
    try {
      do {
        again = false;
        await refresh();
      } while (again);
    } finally {
      running = false;
    }
  };

  open();
}

async function refresh() {
  let response;
  try {
    response = await fetch(location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" });
  } catch {
    return;
  }
  if (!response.ok || new URL(response.url).pathname === "/login") return;
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const region of document.querySelectorAll("[data-region][id]")) {
    const fresh = doc.getElementById(region.id);
    if (!fresh || fresh.dataset.key === region.dataset.key) continue;
    if (typing(region)) continue; // never throw away what someone is writing; a later refresh catches up
    const focused = region.contains(document.activeElement) ? document.activeElement : null;
    const href = focused && focused.getAttribute("href");
    const replacement = document.importNode(fresh, true);
    region.replaceWith(replacement);
    if (href) replacement.querySelector(`a[href="${CSS.escape(href)}"]`)?.focus();
  }
  for (const id of freshReview) {
    // Marked while it waits in Review; once decided it looks like any other card again.
    document.querySelector(`#col-REVIEW .card[data-task-id="${id}"]`)?.classList.add("fresh");
  }
}

function typing(region) {
  for (const field of region.querySelectorAll("textarea, input:not([type=hidden]):not([type=checkbox]):not([type=radio])")) {
    if (field.value !== field.defaultValue) return true;
  }
  return false;
}

function signalReview(event) {
  reviewCount += 1;
  freshReview.add(event.task_id);
  if (badge) {
    badge.hidden = false;
    badge.textContent = `${reviewCount} new in review`;
  }
  document.title = `(${reviewCount}) ${baseTitle}`;
  announce(`Task #${event.task_id} is ready for review`);
  sound.beep();
}

function clearBadge() {
  reviewCount = 0;
  if (badge) badge.hidden = true;
  document.title = baseTitle;
}

function setStatus(state, text) {
  if (!statusEl) return;
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

function announce(text) {
  if (announcer) announcer.textContent = text;
}

// A short two-tone beep made with WebAudio: no sound file to ship. Browsers only allow audio after
// the person has interacted with the page, so the context is (re)started on the first key or click.
function setupSound() {
  let ctx = null;
  let on = readPreference();
  const unlock = () => {
    try {
      ctx ??= new AudioContext();
      if (ctx.state === "suspended") ctx.resume();
    } catch {
      /* no audio on this device */
    }
  };
  addEventListener("pointerdown", unlock, { passive: true });
  addEventListener("keydown", unlock, { passive: true });

  const show = () => {
    soundToggle.setAttribute("aria-pressed", String(on));
    soundToggle.textContent = on ? "Sound on" : "Sound off";
  };
  if (soundToggle) {
    soundToggle.hidden = false;
    show();
    soundToggle.addEventListener("click", () => {
      on = !on;
      try {
        localStorage.setItem("osiris-sound", on ? "on" : "off");
      } catch {
        /* private mode: the choice lasts for this page */
      }
      show();
      if (on) beep();
    });
  }

  function beep() {
    if (!on) return;
    document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
    try {
      ctx ??= new AudioContext();
      const start = ctx.currentTime + 0.01;
      [880, 1320].forEach((frequency, i) => {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        const t = start + i * 0.16;
        osc.type = "sine";
        osc.frequency.value = frequency;
        gain.gain.setValueAtTime(0.0001, t);
        gain.gain.exponentialRampToValueAtTime(0.25, t + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.14);
        osc.connect(gain).connect(ctx.destination);
        osc.start(t);
        osc.stop(t + 0.15);
      });
    } catch {
      /* audio unavailable: the badge still shows */
    }
  }
  return { beep };
}

function readPreference() {
  try {
    return localStorage.getItem("osiris-sound") !== "off";
  } catch {
    return true;
  }
}
