// Two turns with the Vercel AI SDK's defaults against the gateway (run by tests/clients/test_the_vercel_ai_sdk_*.py).
//
// The Responses model, store left to its default (true): turn 2's messages are turn 1's
// messages plus `response.messages` as the SDK returned them, so the SDK sends turn 1's
// answer as an `item_reference` to its stored id. Prints one JSON line: per turn, the
// answer and the response id (what the SDK sent is read from the gateway's audit rows: ai 7
// leaves the request body out of its result unless asked, and this script keeps the defaults).
// Usage: node ai_sdk_turns.mjs GATEWAY_URL MODEL (the client key in GATEWAY_KEY).
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

// The packages live in the git-ignored .ai-sdk/ folder (make ai-sdk), not beside this script.
const root = path.resolve(import.meta.dirname, "..", "..", ".ai-sdk");
const require = createRequire(path.join(root, "package.json"));
const load = (name) => import(pathToFileURL(require.resolve(name)).href);
const { generateText } = await load("ai");
const { createOpenAI } = await load("@ai-sdk/openai");

const [gatewayUrl, model] = process.argv.slice(2);
const openai = createOpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: process.env.GATEWAY_KEY });

function turn(result) {
  return { text: result.text, responseId: result.response.id };
}

const messages = [{ role: "user", content: "Capital of France?" }];
const first = await generateText({ model: openai.responses(model), messages, maxRetries: 0 });
messages.push(...first.response.messages, { role: "user", content: "Second city?" });
const second = await generateText({ model: openai.responses(model), messages, maxRetries: 0 });
console.log(JSON.stringify({ turns: [turn(first), turn(second)] }));
