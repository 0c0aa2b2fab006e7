-- wrk script for benches/state/run.sh: the requests of one row, chosen by REQUEST.
--   REQUEST=kv-bump     GET /state/kv-bump?store=bench&key=kN: http-state's key-value get,
--                       then set, of one of KEYS random keys
--   REQUEST=orders-put  PUT /orders/bench-N with a whole order, N one of ORDERS seeded orders:
--                       the orders example's read and write (SELECT, then UPDATE, in one
--                       transaction)
local mode = os.getenv("REQUEST") or ""
local keys = tonumber(os.getenv("KEYS") or "1000")
local orders = tonumber(os.getenv("ORDERS") or "500")
local json = { ["Content-Type"] = "application/json" }
local threads = 0

-- Each wrk thread has its own Lua state: give each its own random sequence.
function setup(thread)
    threads = threads + 1
    thread:set("seed", threads)
end

function init(args)
    if mode ~= "kv-bump" and mode ~= "orders-put" then
        error("benches/state/requests.lua: set REQUEST to kv-bump or orders-put, not '" .. mode .. "'")
    end
    math.randomseed(os.time() * 100 + (seed or 0))
end

function request()
    if mode == "kv-bump" then
        return wrk.format("GET", "/state/kv-bump?store=bench&key=k" .. math.random(1, keys))
    end
    local id = "bench-" .. math.random(1, orders)
    local body = string.format(
        '{"order_id":"%s","product_id":"p-%d","quantity":%d,"amount":%d.5,"shipping":4.0,"tax":1.25,"shipping_address":"1 Bench Street"}',
        id, math.random(1, 100), math.random(1, 9), math.random(1, 500))
    return wrk.format("PUT", "/orders/" .. id, json, body)
end
