// @ts-check
// Stasis Mirror Sync web UI: plain ES modules, no build step, no network but the API.
// Every piece of server data reaches the page through textContent, never as markup.

import { TOKEN_KEY, api, h, loading, main, page, toast } from "./lib.js";
import { operator } from "./operator.js";
import { mirrorPage } from "./mirror.js";
import { mirrors } from "./mirrors.js";

/** @typedef {{ username: string, is_admin: boolean }} Me */
/** @type {Me | null} */
let me = null;

// ---- sign-in -------------------------------------------------------------------------

function signIn() {
  const error = h("p", { id: "token-error", class: "form-error", role: "alert" });
  const input = h("input", {
    id: "token", type: "password", name: "token", required: true,
    autocomplete: "off", "aria-describedby": "token-help token-error",
  });
  const form = h("form", {
    onsubmit: async (/** @type {Event} */ e) => {
      e.preventDefault();
      const token = /** @type {HTMLInputElement} */ (input).value.trim();
      localStorage.setItem(TOKEN_KEY, token);
      try {
        me = await api("GET", "/user");
        location.hash = "#/mirrors";
        route();
      } catch (err) {
        localStorage.removeItem(TOKEN_KEY);
        error.textContent = err.status === 401 ? "That token is not valid." : err.message;
        input.setAttribute("aria-invalid", "true");
        input.focus();
      }
    },
  },
  h("label", { for: "token", text: "API token" }),
  h("p", { id: "token-help", class: "muted" }, "Create one with ", h("code", { text: "stasisctl user create NAME" }),
    ". It is kept in this browser only."),
  input, error,
  h("p", {}, h("button", { type: "submit", class: "primary", text: "Sign in" })));
  page("Sign in", form);
  input.focus();
}

function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  me = null;
  location.hash = "";
  route();
}

// ---- import --------------------------------------------------------------------------

/** Which field an API error code is about. */
const FIELD_OF_CODE = {
  invalid_name: "name", conflict: "name",
  invalid_url: "clone_url", blocked_url: "clone_url", credentials_unsupported: "clone_url",
  invalid_credentials: "cred_secret",
  invalid_interval: "sync_interval", invalid_refs: "include_refs", invalid_description: "description",
};

function importForm() {
  /** @param {string} id @param {string} label @param {Record<string, any>} attrs */
  const field = (id, label, attrs) => {
    const input = h("input", { id, name: id, "aria-describedby": `${id}-error`, ...attrs });
    return [h("label", { for: id, text: label }), input,
      h("p", { id: `${id}-error`, class: "field-error", "data-testid": `${id}-error` })];
  };
  /** @param {string} id @param {string} label @param {string} help */
  const area = (id, label, help) => [h("label", { for: id, text: label }),
    h("p", { id: `${id}-help`, class: "muted", text: help }),
    h("textarea", { id, name: id, rows: "2", "aria-describedby": `${id}-help ${id}-error` }),
    h("p", { id: `${id}-error`, class: "field-error", "data-testid": `${id}-error` })];
  const formError = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { novalidate: true },
    ...field("name", "Repository name", { type: "text", required: true, autocomplete: "off" }),
    ...field("clone_url", "Clone URL", { type: "text", required: true, inputmode: "url", placeholder: "https://example.com/owner/repo.git" }),
    h("label", { class: "inline" }, h("input", { id: "mirror", name: "mirror", type: "checkbox", checked: true }), "Keep it as a mirror (sync on a schedule)"),
    h("details", {}, h("summary", { text: "Credentials (private http(s) upstreams)" }),
      h("p", { class: "muted", text: "Sealed on the server and never shown again. With an access token, the user name is what the host expects (x-access-token on GitHub, oauth2 on GitLab)." }),
      ...field("cred_username", "User name", { type: "text", autocomplete: "off" }),
      ...field("cred_secret", "Password or access token", { type: "password", autocomplete: "new-password" })),
    h("details", {}, h("summary", { text: "More options" }),
      ...field("description", "Description", { type: "text", autocomplete: "off", maxlength: "1000" }),
      h("label", { class: "inline" }, h("input", { id: "private", name: "private", type: "checkbox" }), "Private (only you and admins see it)"),
      ...field("sync_interval", "Sync interval", { type: "text", autocomplete: "off", placeholder: "default, or like 30m or 2h" }),
      ...area("include_refs", "Refs to keep (one pattern per line)", "e.g. refs/heads/release/*; empty keeps every ref."),
      ...area("exclude_refs", "Refs to leave out (one pattern per line)", "e.g. refs/pull/*; these win over the refs to keep.")),
    formError,
    h("p", {}, h("button", { type: "submit", class: "primary", text: "Import" })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(/** @type {HTMLFormElement} */ (form));
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    formError.textContent = "";
    /** @param {string} id @param {string} message */
    const invalid = (id, message) => {
      const input = /** @type {HTMLElement} */ (form.querySelector(`#${id}`));
      input.setAttribute("aria-invalid", "true");
      /** @type {HTMLElement} */ (form.querySelector(`#${id}-error`)).textContent = message;
      input.focus();
    };
    const name = String(data.get("name") ?? "").trim();
    const url = String(data.get("clone_url") ?? "").trim();
    if (!name) return invalid("name", "A name is required.");
    if (!url) return invalid("clone_url", "A clone URL is required.");
    const username = String(data.get("cred_username") ?? "").trim();
    const secret = String(data.get("cred_secret") ?? "");
    if (username && !secret) return invalid("cred_secret", "A password or token goes with the user name.");
    if (secret && !username) return invalid("cred_username", "A user name goes with the password or token.");
    try {
      /** @type {Record<string, unknown>} */
      const body = { name, clone_url: url, mirror: data.get("mirror") === "on" };
      if (username) body.credentials = { username, token: secret };
      const lines = (/** @type {string} */ k) => String(data.get(k) ?? "").split("\n").map((l) => l.trim()).filter(Boolean);
      const description = String(data.get("description") ?? "").trim();
      if (description) body.description = description;
      if (data.get("private") === "on") body.private = true;
      const every = String(data.get("sync_interval") ?? "").trim();
      if (every) body.sync_interval = every;
      if (lines("include_refs").length) body.include_refs = lines("include_refs");
      if (lines("exclude_refs").length) body.exclude_refs = lines("exclude_refs");
      await api("POST", "/repos/import", body);
      toast(`${name} imported; its first sync is queued.`);
      location.hash = "#/mirrors";
    } catch (err) {
      const id = FIELD_OF_CODE[/** @type {keyof FIELD_OF_CODE} */ (err.code)];
      if (id) {
        // a field behind "More options" is shown before it is pointed at
        const more = form.querySelector(`#${id}`)?.closest("details");
        if (more) more.open = true;
        invalid(id, err.message);
      }
      else formError.textContent = err.message;
    }
  });
  page("Import a repository", form);
}

// ---- routing -------------------------------------------------------------------------

async function route() {
  const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
  if (!localStorage.getItem(TOKEN_KEY)) {
    nav.hidden = true;
    signIn();
    return;
  }
  if (!me) {
    page("Stasis Mirror Sync", loading());
    try {
      me = await api("GET", "/user");
    } catch (err) {
      if (err.status === 401) { signOut(); return; }
      page("Stasis Mirror Sync", h("p", { class: "form-error", role: "alert", text: err.message }));
      return;
    }
  }
  nav.hidden = false;
  /** @type {HTMLElement} */ (document.getElementById("whoami")).textContent =
    `${me?.username}${me?.is_admin ? " (admin)" : ""}`;
  /** @type {HTMLElement} */ (document.getElementById("nav-operator")).hidden = !me?.is_admin;
  const path = location.hash.split("?")[0];
  const one = path.match(/^#\/mirror\/([^/]+)\/([^/]+)$/);
  if (one) await mirrorPage(decodeURIComponent(one[1]), decodeURIComponent(one[2]), me);
  else if (path === "#/import") importForm();
  else if (path === "#/operator") await operator(me);
  else await mirrors(me);
  main().focus();
}

document.getElementById("sign-out")?.addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
