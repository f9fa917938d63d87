// Copied from shared/benchmarks/nodered/settings.js (unchanged below this line).
// bench.py passes NODE_RED_PORT, NODE_RED_FLOWS and NODE_RED_USERDIR.
// Node-RED settings for the webhook baseline benchmark (headless, loopback only).
// Port comes from NODE_RED_PORT; run.sh picks a free one.
const path = require("path");
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.NODE_RED_PORT || "18880", 10),
    userDir: process.env.NODE_RED_USERDIR || path.join(__dirname, "userdir"),
    flowFile: process.env.NODE_RED_FLOWS || path.join(__dirname, "flows.json"),
    flowFilePretty: true,
    credentialSecret: false,
    httpAdminRoot: false,          // no editor, no admin API
    httpNodeRoot: "/",
    httpStatic: false,
    disableEditor: true,
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    functionExternalModules: false,
    functionGlobalContext: {},
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { projects: { enabled: false } },
};
