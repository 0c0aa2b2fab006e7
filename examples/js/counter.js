// counter: a per-user counter on wedge's key-value capability (wasi:keyvalue), the same API as
// examples/python/counter.py. The function needs `key_value_stores = ["default"]` in its
// config; the store is an embedded SQLite file unless the runtime config moves `default` to
// Redis (examples/app/runtime-servers.toml): this code is the same on both.
//
//   POST   .../counter/USER   adds 1 (atomics.increment) -> {"user", "count", "last_seen"}
//   GET    .../counter/USER   the count (0 if none) and when it last went up (null if never)
//   DELETE .../counter/USER   resets it -> {"user", "count": 0, "last_seen": null}
//   GET    .../counter        {"users": [...]}: every user with a count (list-keys, all pages)
//   anything else on those    405
//
// Keys: `count:USER` holds the count (a decimal number, as increment keeps it) and
// `seen:USER` the time of the last increment (set/get: plain bytes, here UTF-8 text).
// The function sees the full path (its route included), so it routes on the last segments.
//
// Errors: the store down or too slow -> 503 {"error": "key-value store unavailable: ..."};
// not granted -> 500 saying what to grant; anything else -> 500.
import { open } from "wasi:keyvalue/store@0.2.0-draft";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft";

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

const STORE = "default";
const MAX_USER = 128;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const json = (status, value) =>
  new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json" },
  });
const error = (status, message) => json(status, { error: message });

class BadRequest extends Error {}

// ".../counter" -> { user: null }; ".../counter/USER" -> { user: "USER" }; else null.
function parsePath(pathname) {
  const segments = pathname.split("/").filter((s) => s !== "");
  const n = segments.length;
  if (n >= 2 && segments[n - 2] === "counter") {
    let user;
    try {
      user = decodeURIComponent(segments[n - 1]);
    } catch {
      throw new BadRequest("the user in the path is not valid percent-encoding");
    }
    if (user.length > MAX_USER) {
      throw new BadRequest(`a user name has at most ${MAX_USER} characters`);
    }
    return { user };
  }
  if (n >= 1 && segments[n - 1] === "counter") {
    return { user: null };
  }
  return null;
}

// get returns a Uint8Array, or undefined when the key is not there.
function readCount(bucket, user) {
  const value = bucket.get(`count:${user}`);
  return value === undefined ? 0 : Number(decoder.decode(value));
}

function readSeen(bucket, user) {
  const value = bucket.get(`seen:${user}`);
  return value === undefined ? null : decoder.decode(value);
}

// Every key of the store, page by page: list-keys answers a cursor (a BigInt) while there are
// more. Only the `count:` keys are users; the store may hold other functions' keys too.
function listUsers(bucket) {
  const users = [];
  let cursor = undefined;
  do {
    const page = bucket.listKeys(cursor);
    for (const key of page.keys) {
      if (key.startsWith("count:")) users.push(key.slice("count:".length));
    }
    cursor = page.cursor;
  } while (cursor !== undefined);
  return users.sort();
}

function route(request, bucket) {
  const target = parsePath(new URL(request.url).pathname);
  if (target === null) {
    return error(404, "not found: use .../counter or .../counter/USER");
  }
  const { user } = target;
  const method = request.method;
  if (user === null) {
    return method === "GET"
      ? json(200, { users: listUsers(bucket) })
      : error(405, "use GET on .../counter");
  }
  switch (method) {
    case "POST": {
      // Atomic on every backend: two requests at once never lose a count. u64: BigInt.
      const count = increment(bucket, `count:${user}`, 1n);
      const now = new Date().toISOString();
      bucket.set(`seen:${user}`, encoder.encode(now));
      return json(200, { user, count: Number(count), last_seen: now });
    }
    case "GET":
      return json(200, { user, count: readCount(bucket, user), last_seen: readSeen(bucket, user) });
    case "DELETE":
      bucket.delete(`count:${user}`); // deleting a key that is not there is no error
      bucket.delete(`seen:${user}`);
      return json(200, { user, count: 0, last_seen: null });
    default:
      return error(405, "use GET, POST or DELETE on .../counter/USER");
  }
}

// A failed wasi:keyvalue call throws; the error variant ({tag, val}) is in `.payload`.
function storeError(failure) {
  switch (failure.tag) {
    case "access-denied":
    case "no-such-store":
      return error(
        500,
        `key-value store \`${STORE}\` not available to this function (${failure.tag}): its config must grant it (key_value_stores = ["${STORE}"])`,
      );
    default: // "other": wedge says "key-value store `NAME` is unavailable: ..." when it is down
      return / is unavailable/.test(failure.val)
        ? error(503, `key-value store unavailable: ${failure.val}`)
        : error(500, `key-value error: ${failure.val}`);
  }
}

function handle(request) {
  try {
    return route(request, open(STORE));
  } catch (e) {
    if (e instanceof BadRequest) {
      return error(400, e.message);
    }
    if (e?.payload?.tag) {
      return storeError(e.payload);
    }
    return error(500, `internal error: ${e}`);
  }
}
