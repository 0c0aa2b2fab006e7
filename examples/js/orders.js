// orders: the classic orders microservice on wedge's SQL capability (wedge:sql), the same API as
// examples/python/orders.py. The function needs `sql_databases = ["orders"]` in its config; the
// database is an embedded SQLite file unless the runtime config moves `orders` to MySQL/MariaDB
// (examples/app/runtime-servers.toml): this code is the same on both.
//
//   POST   .../orders        a JSON order -> 201 and the stored order; 400 naming the bad field;
//                            409 if its order_id exists
//   GET    .../orders        200, a JSON list of every order
//   GET    .../orders/ID     200 and the order, or 404
//   PUT    .../orders/ID     a whole order (its order_id, if given, must be ID) -> 200, 404, 400
//   DELETE .../orders/ID     204, or 404
//   anything else on those   405
//
// An order: {"order_id": string, "product_id": string, "quantity": integer >= 1,
//            "amount": number >= 0, "shipping": number >= 0, "tax": number >= 0,
//            "shipping_address": string}
//
// The function sees the full path (its route included), so it routes on the path's last
// segments: ".../orders" is the collection and ".../orders/ID" one order, whatever the route.
//
// Database errors: `unavailable` (server down, timed out) -> 503 {"error": "database
// unavailable: ..."}; `access-denied` (the config does not grant `orders`) and anything else
// -> 500.
import { Connection } from "wedge:sql/sql@0.1.0";

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

const DATABASE = "orders";

// SQL that both the embedded SQLite and MySQL/MariaDB accept. Every request runs in a fresh
// instance, so there is no "already created" flag to keep: IF NOT EXISTS makes it cheap.
const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS orders (
  order_id VARCHAR(64) PRIMARY KEY,
  product_id VARCHAR(64) NOT NULL,
  quantity INTEGER NOT NULL,
  amount DOUBLE NOT NULL,
  shipping DOUBLE NOT NULL,
  tax DOUBLE NOT NULL,
  shipping_address TEXT NOT NULL
)`;

const COLUMNS = "order_id, product_id, quantity, amount, shipping, tax, shipping_address";

// SQL INJECTION: every value that comes from the request (the id in the path, every field of
// the body) is passed in `params` and bound to a `?` by the database itself, so it is always
// data, never SQL. Never build a statement with string formatting or `+`:
//   db.execute(`SELECT ... WHERE order_id = '${id}'`, [])   // WRONG: the id can end the string
//   db.execute("SELECT ... WHERE order_id = ?", [text(id)])  // right, whatever the id contains
// The statements below are constants (COLUMNS is ours, not the user's); only `params` vary.

// wedge:sql values are variants ({tag, val}); integers are BigInt.
const text = (s) => ({ tag: "text", val: s });
const integer = (n) => ({ tag: "integer", val: BigInt(n) });
const real = (x) => ({ tag: "real", val: x });

// An order as statement parameters, in the order of COLUMNS.
const orderParams = (o) => [
  text(o.order_id),
  text(o.product_id),
  integer(o.quantity),
  real(o.amount),
  real(o.shipping),
  real(o.tax),
  text(o.shipping_address),
];

// A number column may come back as `integer` or `real` depending on the backend and value.
const num = (v) => (v.tag === "integer" ? Number(v.val) : v.val);

// A result row (columns in the order of COLUMNS) as an order.
function rowToOrder(row) {
  const [orderId, productId, quantity, amount, shipping, tax, address] = row.values;
  return {
    order_id: orderId.val,
    product_id: productId.val,
    quantity: num(quantity),
    amount: num(amount),
    shipping: num(shipping),
    tax: num(tax),
    shipping_address: address.val,
  };
}

// Money columns are DOUBLE: write them as JSON floats (4.0, not 4) as Python's json does, so
// both examples answer the same bytes and typed clients see a float. JSON.stringify cannot
// write 4.0, hence this little writer.
function float(x) {
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

function orderJson(o) {
  return (
    `{"order_id":${JSON.stringify(o.order_id)},"product_id":${JSON.stringify(o.product_id)},` +
    `"quantity":${o.quantity},"amount":${float(o.amount)},"shipping":${float(o.shipping)},` +
    `"tax":${float(o.tax)},"shipping_address":${JSON.stringify(o.shipping_address)}}`
  );
}

function reply(status, body) {
  return new Response(body, { status, headers: { "content-type": "application/json" } });
}

const json = (status, value) => reply(status, JSON.stringify(value));
const error = (status, message) => json(status, { error: message });

// A request the client got wrong: answered 400 with its message.
class BadRequest extends Error {}

const MAX_ID = 64; // VARCHAR(64)
const MAX_QUANTITY = 2147483647; // INTEGER is 32-bit on MySQL

// Checks a parsed JSON body field by field; throws BadRequest naming the first bad field.
function validateOrder(input) {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw new BadRequest("the body must be a JSON object (an order)");
  }
  const field = (name) => {
    if (!(name in input) || input[name] === null) {
      throw new BadRequest(`missing field: ${name}`);
    }
    return input[name];
  };
  const id = (name) => {
    const value = field(name);
    if (typeof value !== "string" || value.length === 0 || value.length > MAX_ID) {
      throw new BadRequest(`${name} must be a string of 1 to ${MAX_ID} characters`);
    }
    return value;
  };
  const money = (name) => {
    const value = field(name);
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new BadRequest(`${name} must be a number >= 0`);
    }
    return value;
  };
  const order = { order_id: id("order_id"), product_id: id("product_id") };
  const quantity = field("quantity");
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > MAX_QUANTITY) {
    throw new BadRequest(`quantity must be an integer from 1 to ${MAX_QUANTITY}`);
  }
  order.quantity = quantity;
  order.amount = money("amount");
  order.shipping = money("shipping");
  order.tax = money("tax");
  const address = field("shipping_address");
  if (typeof address !== "string") {
    throw new BadRequest("shipping_address must be a string");
  }
  order.shipping_address = address;
  return order;
}

async function readOrder(request) {
  let input;
  try {
    input = JSON.parse(await request.text());
  } catch (e) {
    throw new BadRequest(`invalid JSON: ${e.message}`);
  }
  return validateOrder(input);
}

// ".../orders" -> { id: null }; ".../orders/ID" -> { id: "ID" } (percent-decoded); else null.
function parsePath(pathname) {
  const segments = pathname.split("/").filter((s) => s !== "");
  const n = segments.length;
  if (n >= 2 && segments[n - 2] === "orders") {
    try {
      return { id: decodeURIComponent(segments[n - 1]) };
    } catch {
      throw new BadRequest("the order id in the path is not valid percent-encoding");
    }
  }
  if (n >= 1 && segments[n - 1] === "orders") {
    return { id: null };
  }
  return null;
}

function findOrder(db, id) {
  const result = db.execute(`SELECT ${COLUMNS} FROM orders WHERE order_id = ?`, [text(id)]);
  return result.rows.length ? rowToOrder(result.rows[0]) : null;
}

async function route(request, db) {
  const target = parsePath(new URL(request.url).pathname);
  if (target === null) {
    return error(404, "not found: use .../orders or .../orders/ID");
  }
  const { id } = target;
  const method = request.method;

  if (id === null) {
    if (method === "GET") {
      const result = db.execute(`SELECT ${COLUMNS} FROM orders ORDER BY order_id`, []);
      return reply(200, `[${result.rows.map((row) => orderJson(rowToOrder(row))).join(",")}]`);
    }
    if (method === "POST") {
      const order = await readOrder(request);
      try {
        db.execute(`INSERT INTO orders (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`, orderParams(order));
      } catch (e) {
        // The primary key says the id is taken; no need to look first (and no race).
        if (e?.payload?.tag === "constraint-violation") {
          return error(409, `order ${order.order_id} already exists`);
        }
        throw e;
      }
      return reply(201, orderJson(order));
    }
    return error(405, "use GET or POST on .../orders");
  }

  if (method === "GET") {
    const order = findOrder(db, id);
    return order ? reply(200, orderJson(order)) : error(404, `no order ${id}`);
  }
  if (method === "PUT") {
    const body = await request.text();
    let input;
    try {
      input = JSON.parse(body);
    } catch (e) {
      throw new BadRequest(`invalid JSON: ${e.message}`);
    }
    if (input !== null && typeof input === "object" && !Array.isArray(input)) {
      if (input.order_id === undefined || input.order_id === null) {
        input.order_id = id;
      } else if (input.order_id !== id) {
        throw new BadRequest(`order_id in the body (${input.order_id}) is not the one in the path (${id})`);
      }
    }
    const order = validateOrder(input);
    // A transaction, so the check and the update see the same row. (Checking first also
    // keeps PUT portable: MySQL counts an UPDATE that changes nothing as 0 rows affected.)
    db.begin();
    try {
      if (findOrder(db, id) === null) {
        db.rollback();
        return error(404, `no order ${id}`);
      }
      db.execute(
        "UPDATE orders SET product_id = ?, quantity = ?, amount = ?, shipping = ?, tax = ?, shipping_address = ? WHERE order_id = ?",
        [...orderParams(order).slice(1), text(id)],
      );
      db.commit();
    } catch (e) {
      try {
        db.rollback();
      } catch {
        // already rolled back (or the connection is gone): the host rolls back anyway
      }
      throw e;
    }
    return reply(200, orderJson(order));
  }
  if (method === "DELETE") {
    const result = db.execute("DELETE FROM orders WHERE order_id = ?", [text(id)]);
    return result.rowsAffected > 0n ? new Response(null, { status: 204 }) : error(404, `no order ${id}`);
  }
  return error(405, "use GET, PUT or DELETE on .../orders/ID");
}

// A failed wedge:sql call throws; the error variant ({tag, val}) is in `.payload`.
function databaseError(e) {
  const failure = e.payload;
  switch (failure.tag) {
    case "unavailable":
      return error(503, `database unavailable: ${failure.val}`);
    case "access-denied":
      return error(
        500,
        `access to the SQL database \`${DATABASE}\` denied: the function's config must grant it (sql_databases = ["${DATABASE}"])`,
      );
    default:
      return error(500, `database error (${failure.tag})${failure.val ? `: ${failure.val}` : ""}`);
  }
}

async function handle(request) {
  try {
    const db = Connection.open(DATABASE);
    db.execute(CREATE_TABLE, []);
    return await route(request, db);
  } catch (e) {
    if (e instanceof BadRequest) {
      return error(400, e.message);
    }
    if (e?.payload?.tag) {
      return databaseError(e);
    }
    return error(500, `internal error: ${e}`);
  }
}
