// Loads the mirrorfarm status widget (wasm) and registers <mirrorfarm-status>.
//   <script type="module" src="https://<mirrorfarm>/ui/mirrorfarm-status.js"></script>
//   <mirrorfarm-status api="https://<mirrorfarm>" repo="42" token="<STATUS_READ token>"></mirrorfarm-status>
// Also exports `mount(element, {api, repo, token, refresh})` for pages that prefer a function.
//
// The element lives here rather than in the wasm: it calls the exported `mount` directly, where a
// Rust-side definition needed a second, inlined copy of `mount` behind a closure. The wasm is
// fetched and compiled with `initSync`, which leaves wasm-bindgen's async loader (its
// MIME-type fallback and warnings) out of the bundle.
import { initSync, mount } from "./mirrorfarm_ui.js";

const wasm = await fetch(new URL("./mirrorfarm_ui_bg.wasm", import.meta.url));
initSync({ module: await WebAssembly.compile(await wasm.arrayBuffer()) });

if (!customElements.get("mirrorfarm-status")) {
  customElements.define(
    "mirrorfarm-status",
    class extends HTMLElement {
      static get observedAttributes() {
        return ["api", "repo", "token", "refresh"];
      }
      connectedCallback() {
        this.restart();
      }
      disconnectedCallback() {
        this.stop();
      }
      attributeChangedCallback() {
        if (this.isConnected) this.restart();
      }
      stop() {
        if (this.widget) {
          this.widget.free();
          this.widget = undefined;
        }
      }
      restart() {
        this.stop();
        if (!this.view) {
          const root = this.shadowRoot || this.attachShadow({ mode: "open" });
          this.view = document.createElement("div");
          root.replaceChildren(this.view);
        }
        const a = (n) => this.getAttribute(n) ?? undefined;
        try {
          this.widget = mount(this.view, { api: a("api"), repo: a("repo"), token: a("token"), refresh: a("refresh") });
        } catch (e) {
          this.view.textContent = String(e.message || e);
          this.view.setAttribute("role", "alert");
        }
      }
    },
  );
}

export { mount };
