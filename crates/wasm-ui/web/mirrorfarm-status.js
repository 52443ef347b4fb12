// Loads the mirrorfarm status widget (wasm) and registers <mirrorfarm-status>.
//   <script type="module" src="https://<mirrorfarm>/ui/mirrorfarm-status.js"></script>
//   <mirrorfarm-status api="https://<mirrorfarm>" repo="42" token="<STATUS_READ token>"></mirrorfarm-status>
// Also exports `mount(element, {api, repo, token, refresh})` for pages that prefer a function.
import init, { define, mount } from "./mirrorfarm_ui.js";

await init({ module_or_path: new URL("./mirrorfarm_ui_bg.wasm", import.meta.url) });
define();

export { mount };
