//! The orders microservice of WasmEdge's MySQL demo (microservice-rust-mysql), as such apps
//! are written: hyper_wasi's server on tokio_wasi, mysql_async_wasi's pool, the database
//! from `DATABASE_URL`, JSON in and out.
//!
//! Routes: `GET /init` (re)creates the table; `POST /create_order` inserts one order,
//! `POST /create_orders` a JSON array of them; `GET /orders` lists them by id;
//! `POST /update_order` updates one by `order_id`; `GET /delete_order?id=N` deletes one.
//! It listens on 0.0.0.0:$PORT (8080 by default).

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Method, Request, Response, Server, StatusCode};
use mysql_async::prelude::*;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct Order {
    order_id: i32,
    product_id: i32,
    quantity: i32,
    amount: f32,
    shipping: f32,
    tax: f32,
    shipping_address: String,
}

fn order_params(order: &Order) -> mysql_async::Params {
    params! {
        "order_id" => order.order_id,
        "product_id" => order.product_id,
        "quantity" => order.quantity,
        "amount" => order.amount,
        "shipping" => order.shipping,
        "tax" => order.tax,
        "shipping_address" => &order.shipping_address,
    }
}

const INSERT: &str = "INSERT INTO orders (order_id, product_id, quantity, amount, shipping, tax, shipping_address) VALUES (:order_id, :product_id, :quantity, :amount, :shipping, :tax, :shipping_address)";

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    response
}

fn ok() -> Response<Body> {
    json(StatusCode::OK, "{\"status\":true}".to_string())
}

async fn handle(request: Request<Body>, pool: Pool) -> anyhow::Result<Response<Body>> {
    match (request.method().clone(), request.uri().path()) {
        (Method::GET, "/") => Ok(Response::new(Body::from(
            "The valid endpoints are /init /create_order /create_orders /orders /update_order /delete_order\n",
        ))),
        (Method::GET, "/init") => {
            let mut conn = pool.get_conn().await?;
            "DROP TABLE IF EXISTS orders".ignore(&mut conn).await?;
            "CREATE TABLE orders (order_id INT, product_id INT, quantity INT, amount FLOAT, shipping FLOAT, tax FLOAT, shipping_address VARCHAR(20))"
                .ignore(&mut conn)
                .await?;
            Ok(ok())
        }
        (Method::POST, "/create_order") => {
            let body = hyper::body::to_bytes(request.into_body()).await?;
            let order: Order = serde_json::from_slice(&body)?;
            let mut conn = pool.get_conn().await?;
            INSERT.with(order_params(&order)).ignore(&mut conn).await?;
            Ok(ok())
        }
        (Method::POST, "/create_orders") => {
            let body = hyper::body::to_bytes(request.into_body()).await?;
            let orders: Vec<Order> = serde_json::from_slice(&body)?;
            let mut conn = pool.get_conn().await?;
            INSERT
                .with(orders.iter().map(order_params))
                .batch(&mut conn)
                .await?;
            Ok(ok())
        }
        (Method::POST, "/update_order") => {
            let body = hyper::body::to_bytes(request.into_body()).await?;
            let order: Order = serde_json::from_slice(&body)?;
            let mut conn = pool.get_conn().await?;
            "UPDATE orders SET product_id=:product_id, quantity=:quantity, amount=:amount, shipping=:shipping, tax=:tax, shipping_address=:shipping_address WHERE order_id=:order_id"
                .with(order_params(&order))
                .ignore(&mut conn)
                .await?;
            Ok(ok())
        }
        (Method::GET, "/orders") => {
            let mut conn = pool.get_conn().await?;
            let orders = "SELECT order_id, product_id, quantity, amount, shipping, tax, shipping_address FROM orders ORDER BY order_id"
                .with(())
                .map(
                    &mut conn,
                    |(order_id, product_id, quantity, amount, shipping, tax, shipping_address)| Order {
                        order_id,
                        product_id,
                        quantity,
                        amount,
                        shipping,
                        tax,
                        shipping_address,
                    },
                )
                .await?;
            Ok(json(StatusCode::OK, serde_json::to_string(&orders)?))
        }
        (Method::GET, "/delete_order") => {
            let id = request
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("id=")))
                .and_then(|id| id.parse::<i32>().ok());
            let Some(id) = id else {
                return Ok(json(
                    StatusCode::BAD_REQUEST,
                    "{\"error\":\"delete_order needs ?id=N\"}".to_string(),
                ));
            };
            let mut conn = pool.get_conn().await?;
            "DELETE FROM orders WHERE order_id=:order_id"
                .with(params! { "order_id" => id })
                .ignore(&mut conn)
                .await?;
            Ok(ok())
        }
        _ => Ok(json(
            StatusCode::NOT_FOUND,
            "{\"error\":\"no such route\"}".to_string(),
        )),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL=mysql://user:pass@host:port/db")?;
    let opts = OptsBuilder::from_opts(Opts::from_url(&url)?).pool_opts(
        PoolOpts::default().with_constraints(PoolConstraints::new(1, 5).expect("1 <= 5")),
    );
    let pool = Pool::new(opts);
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let make_service = make_service_fn(move |_| {
        let pool = pool.clone();
        async move {
            Ok::<_, Infallible>(service_fn(move |request| {
                let pool = pool.clone();
                async move {
                    Ok::<_, Infallible>(match handle(request, pool).await {
                        Ok(response) => response,
                        Err(error) => json(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            serde_json::json!({ "error": error.to_string() }).to_string(),
                        ),
                    })
                }
            }))
        }
    });
    let server = Server::bind(&addr).serve(make_service);
    println!("listening on {addr}");
    server.await?;
    Ok(())
}
