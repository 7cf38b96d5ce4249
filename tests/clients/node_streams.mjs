// Streamed answers read by the Node clients (run by tests/clients/test_every_client_reads_*.py).
//
// The openai SDK's accumulators (responses.stream and chat.completions.stream, read to their
// final object) and the Vercel AI SDK's streamText on its Responses and Chat models. Prints
// one JSON line: per client, the text it put together, and for the openai SDK's Responses
// stream the event types it yielded.
// Usage: node node_streams.mjs GATEWAY_URL MODEL (the client key in GATEWAY_KEY).
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

// The packages live in the git-ignored .ai-sdk/ folder (make ai-sdk), not beside this script.
const root = path.resolve(import.meta.dirname, "..", "..", ".ai-sdk");
const require = createRequire(path.join(root, "package.json"));
const load = (name) => import(pathToFileURL(require.resolve(name)).href);
const { default: OpenAI } = await load("openai");
const { streamText } = await load("ai");
const { createOpenAI } = await load("@ai-sdk/openai");

const [gatewayUrl, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: process.env.GATEWAY_KEY, maxRetries: 0 });
const provider = createOpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: process.env.GATEWAY_KEY });
const out = {};

const responses = client.responses.stream({ model, input: "Say hello." });
const types = [];
for await (const event of responses) types.push(event.type);
const response = await responses.finalResponse();
out.openai_responses = { text: response.output_text, status: response.status, types };

const chat = client.chat.completions.stream({ model, messages: [{ role: "user", content: "Say hello." }] });
for await (const _ of chat);
out.openai_chat = { text: (await chat.finalChatCompletion()).choices[0].message.content };

for (const [name, languageModel] of [["ai_sdk_responses", provider.responses(model)],
                                     ["ai_sdk_chat", provider.chat(model)]]) {
  const result = streamText({ model: languageModel, prompt: "Say hello.", maxRetries: 0 });
  let text = "";
  for await (const part of result.textStream) text += part;
  out[name] = { text, finishReason: await result.finishReason };
}
console.log(JSON.stringify(out));
