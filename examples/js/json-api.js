// json-api: POST a JSON object {"name": string, "numbers": [number, ...]} and get back
// {"greeting": "hello, NAME", "sum": S, "count": N}. A body that is not JSON, or not such an
// object, gets 400 with {"error": "..."}. The same API as examples/python/json_api.py.
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

function json(status, value) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json" },
  });
}

async function handle(request) {
  if (request.method !== "POST") {
    return json(405, { error: "use POST with a JSON body" });
  }
  let input;
  try {
    input = JSON.parse(await request.text());
  } catch (error) {
    return json(400, { error: `invalid JSON: ${error.message}` });
  }
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    return json(400, { error: "the body must be a JSON object" });
  }
  const name = typeof input.name === "string" ? input.name : "world";
  const numbers = Array.isArray(input.numbers) ? input.numbers : [];
  if (!numbers.every((n) => typeof n === "number")) {
    return json(400, { error: "numbers must be an array of numbers" });
  }
  return json(200, {
    greeting: `hello, ${name}`,
    sum: numbers.reduce((a, b) => a + b, 0),
    count: numbers.length,
  });
}
