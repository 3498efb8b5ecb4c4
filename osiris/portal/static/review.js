// "Files changed": the unified / side-by-side toggle and the per-file "viewed" marks.
// Both views are rendered by the server; this only chooses which one shows (remembered for the
// browser) and remembers which files were read, per task, version and path, in localStorage.
// Live updates replace the section; the observer below applies the state again to what arrives.

const VIEW_KEY = "osiris:diff-view";
const VIEWED_PREFIX = "osiris:viewed:";

function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage may be disabled; the page still works, it just forgets
  }
}

function store(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    /* see stored() */
  }
}

function showView(view) {
  const chosen = view === "split" ? "split" : "unified";
  document.documentElement.dataset.diffView = chosen;
  for (const button of document.querySelectorAll("[data-diff-view]")) {
    button.setAttribute("aria-pressed", String(button.dataset.diffView === chosen));
  }
}

function applyViewed(root) {
  for (const box of root.querySelectorAll("input.viewed-mark")) {
    if (box.dataset.applied) continue;
    box.dataset.applied = "1";
    const seen = stored(VIEWED_PREFIX + box.dataset.viewedKey) === "1";
    box.checked = seen;
    const file = box.closest("details.diff-file");
    if (file) {
      file.classList.toggle("is-viewed", seen);
      if (seen) file.open = false;
    }
  }
}

function apply() {
  showView(stored(VIEW_KEY));
  applyViewed(document);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest?.("[data-diff-view]");
  if (!button) return;
  store(VIEW_KEY, button.dataset.diffView);
  showView(button.dataset.diffView);
});

document.addEventListener("change", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || !box.classList.contains("viewed-mark")) return;
  store(VIEWED_PREFIX + box.dataset.viewedKey, box.checked ? "1" : null);
  const file = box.closest("details.diff-file");
  if (file) {
    file.classList.toggle("is-viewed", box.checked);
    file.open = !box.checked; // a file read is folded away, as on a pull request
  }
});

apply();
new MutationObserver(apply).observe(document.body, { childList: true, subtree: true });

// Comments on lines. Without script each file has a form naming the line; with it, the "+" on a
// line moves that file's form under the line (shift-click a second line of the same side for a
// range), and Cancel puts it back. The form posts as before: nothing here talks to the server.
let openComment = null; // { form, home, row, side, line }

function closeComment() {
  if (!openComment) return;
  const { form, home, row } = openComment;
  home.append(form);
  row.remove();
  openComment = null;
}

document.addEventListener("click", (event) => {
  const plus = event.target.closest?.("button.add-line-comment");
  if (plus) {
    const file = plus.closest("details.diff-file");
    const home = file?.querySelector("details.line-comment");
    const form = openComment && openComment.home === home ? openComment.form : home?.querySelector("form.line-comment-form");
    if (!file || !home || !form) return;
    const side = plus.dataset.side;
    const line = Number(plus.dataset.line);
    let first = null;
    if (event.shiftKey && openComment && openComment.home === home && openComment.side === side && openComment.line !== line) {
      first = Math.min(openComment.line, line);
    }
    const last = first === null ? line : Math.max(openComment.line, line);
    const anchorRow = first === null || line === last ? plus.closest("tr") : openComment.anchor;
    const kept = openComment && openComment.home === home ? form.elements.body.value : "";
    closeComment();
    const row = document.createElement("tr");
    row.className = "comment-form-row";
    const cell = document.createElement("td");
    cell.colSpan = 3;
    row.append(cell);
    anchorRow.after(row);
    cell.append(form);
    form.elements.line.value = String(last);
    form.elements.start_line.value = first === null ? "" : String(first);
    form.elements.side.value = side;
    form.elements.body.value = kept;
    openComment = { form, home, row, side, line: first === null ? line : last, anchor: anchorRow };
    form.elements.body.focus();
    return;
  }
  if (event.target.closest?.("button.cancel-line-comment")) {
    const form = event.target.closest("form");
    if (openComment && openComment.form === form) closeComment();
    else form?.closest("details.line-comment")?.removeAttribute("open");
  }
});
