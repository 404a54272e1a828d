// Opens examples/browser/index.html in Debian's Chromium and reports the lines it shows.
//
//   node read_page.mjs PAGE WS_URL TOPIC COUNT...
//
// For each COUNT in turn it waits until the page's <pre> holds at least COUNT lines and
// prints one JSON line: {"lines": [...], "problems": [...]}. test_page.py reads these
// while it produces more records. The page is loaded from its file exactly as written;
// only its import from the CDN is answered here, from the @bufbuild/protobuf installed
// beside this script (package-lock.json), because this machine reaches no CDN. Any other
// request leaving the machine is refused and reported as a problem. Exits 1 when a wait
// runs past WAIT_MS.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const WAIT_MS = 20_000; // per COUNT: the proxy answers in milliseconds, Chromium starts in a second or two
const CDN = /^https:\/\/esm\.sh\/@bufbuild\/protobuf@([^/]+)\/(.+)$/;

const [pageFile, wsUrl, topic, ...counts] = process.argv.slice(2);
if (!pageFile || !wsUrl || !topic || counts.length === 0) {
  console.error("usage: node read_page.mjs PAGE WS_URL TOPIC COUNT...");
  process.exit(2);
}
if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} not found: install Debian's Chromium (apt-get install chromium)`);
  process.exit(1);
}

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "node_modules", "@bufbuild", "protobuf");
const installed = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
const problems = [];

// Answers the page's CDN request from the local copy. An export of the package ("wire")
// becomes a module re-exporting its file, so that the file's relative imports resolve
// under the same CDN URL and come back here.
async function serveFromPackage(route) {
  const [, version, subpath] = CDN.exec(route.request().url()) ?? [];
  if (version === undefined) {
    problems.push(`refused a request the test cannot answer offline: ${route.request().url()}`);
    return route.abort();
  }
  if (version !== installed.version) {
    problems.push(`the page imports @bufbuild/protobuf@${version}, the test installed ${installed.version}`);
    return route.abort();
  }
  const headers = { "content-type": "text/javascript", "access-control-allow-origin": "*" };
  const target = installed.exports[`./${subpath}`]?.import;
  if (target !== undefined) {
    return route.fulfill({ headers, body: `export * from ${JSON.stringify(target)};\n` });
  }
  const file = resolve(packageDir, subpath);
  if (!file.startsWith(packageDir + "/") || !existsSync(file)) {
    problems.push(`no file ${subpath} in @bufbuild/protobuf ${installed.version}`);
    return route.fulfill({ status: 404, headers, body: "" });
  }
  return route.fulfill({ headers, body: readFileSync(file) });
}

const browser = await chromium.launch({ executablePath: CHROMIUM, timeout: WAIT_MS });
let status = 0;
try {
  const page = await browser.newPage();
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => message.type() === "error" && problems.push(`console: ${message.text()}`));
  await page.route(/^https?:/, serveFromPackage);
  const url = pathToFileURL(resolve(pageFile));
  url.search = new URLSearchParams({ url: wsUrl, topic }).toString();
  await page.goto(url.href);
  const lines = async () => (await page.locator("pre").textContent()).split("\n").slice(0, -1);
  for (const count of counts.map(Number)) {
    try {
      await page.waitForFunction(
        (n) => document.querySelector("pre").textContent.split("\n").length - 1 >= n,
        count,
        { timeout: WAIT_MS },
      );
    } catch (error) {
      problems.push(`fewer than ${count} lines after ${WAIT_MS} ms: ${error.message.split("\n")[0]}`);
      status = 1;
    }
    console.log(JSON.stringify({ lines: await lines(), problems }));
    if (status !== 0) break;
  }
} finally {
  await browser.close();
}
process.exit(status);
