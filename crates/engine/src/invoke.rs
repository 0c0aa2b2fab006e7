//! `--invoke`: call one exported function of a core module with arguments given as text,
//! parsed by the function's signature.

use wasmtime::{ExternType, FuncType, Module, Val, ValType};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvokeError {
    #[error("the module has no export named `{name}`")]
    NoSuchExport { name: String },
    #[error("the export `{name}` is a {kind}, not a function")]
    NotAFunction { name: String, kind: &'static str },
    #[error("`{signature}` takes {expected} {}, but {given} {} given", plural(*expected, "argument"), if *given == 1 { "was" } else { "were" })]
    Arity {
        signature: String,
        expected: usize,
        given: usize,
    },
    #[error("argument {position} of `{signature}`: `{value}` is not a valid {ty}")]
    BadValue {
        signature: String,
        position: usize,
        value: String,
        ty: String,
    },
    #[error(
        "`{signature}` has a parameter or result of type {ty}, which --invoke cannot pass on the command line (only i32, i64, f32 and f64)"
    )]
    Unsupported { signature: String, ty: String },
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// `name(i32, f64) -> i64` for a function; `name: memory` etc. for other exports.
pub fn describe_exports(module: &Module) -> Vec<String> {
    module
        .exports()
        .map(|export| match export.ty() {
            ExternType::Func(ty) => signature(export.name(), &ty),
            other => format!("{}: {}", export.name(), extern_kind(&other)),
        })
        .collect()
}

fn extern_kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "function",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        ExternType::Tag(_) => "tag",
    }
}

/// `name(i32, i32) -> i32`.
pub fn signature(name: &str, ty: &FuncType) -> String {
    let params: Vec<String> = ty.params().map(|t| t.to_string()).collect();
    let results: Vec<String> = ty.results().map(|t| t.to_string()).collect();
    let mut text = format!("{name}({})", params.join(", "));
    match results.len() {
        0 => {}
        1 => text.push_str(&format!(" -> {}", results[0])),
        _ => text.push_str(&format!(" -> ({})", results.join(", "))),
    }
    text
}

/// Looks up `name` and parses `args` by its signature.
pub fn prepare_call(
    module: &Module,
    name: &str,
    args: &[String],
) -> Result<(FuncType, Vec<Val>), InvokeError> {
    let ty = match module.get_export(name) {
        None => {
            return Err(InvokeError::NoSuchExport {
                name: name.to_string(),
            });
        }
        Some(ExternType::Func(ty)) => ty,
        Some(other) => {
            return Err(InvokeError::NotAFunction {
                name: name.to_string(),
                kind: extern_kind(&other),
            });
        }
    };
    let sig = signature(name, &ty);
    for t in ty.params().chain(ty.results()) {
        if !matches!(t, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64) {
            return Err(InvokeError::Unsupported {
                signature: sig,
                ty: t.to_string(),
            });
        }
    }
    if ty.params().len() != args.len() {
        return Err(InvokeError::Arity {
            signature: sig,
            expected: ty.params().len(),
            given: args.len(),
        });
    }
    let values = ty
        .params()
        .zip(args)
        .enumerate()
        .map(|(i, (t, text))| {
            parse_value(&t, text).ok_or_else(|| InvokeError::BadValue {
                signature: sig.clone(),
                position: i + 1,
                value: text.clone(),
                ty: t.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ty, values))
}

/// Integers accept signed or unsigned decimal (and `0x` hex): `-1` and `4294967295` are the
/// same i32. Floats accept decimal, `inf`, `-inf` and `nan`.
fn parse_value(ty: &ValType, text: &str) -> Option<Val> {
    let text = text.trim();
    match ty {
        ValType::I32 => {
            parse_int(text, i32::MIN as i128, u32::MAX as i128).map(|v| Val::I32(v as u32 as i32))
        }
        ValType::I64 => {
            parse_int(text, i64::MIN as i128, u64::MAX as i128).map(|v| Val::I64(v as u64 as i64))
        }
        ValType::F32 => text.parse::<f32>().ok().map(|v| Val::F32(v.to_bits())),
        ValType::F64 => text.parse::<f64>().ok().map(|v| Val::F64(v.to_bits())),
        _ => None,
    }
}

fn parse_int(text: &str, min: i128, max: i128) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i128>().ok()?,
    };
    let value = if negative { -magnitude } else { magnitude };
    (min..=max).contains(&value).then_some(value)
}

/// A result as printed by `--invoke`: integers signed, floats in Rust's shortest form.
pub fn format_value(value: &Val) -> String {
    match value {
        Val::I32(v) => v.to_string(),
        Val::I64(v) => v.to_string(),
        Val::F32(bits) => f32::from_bits(*bits).to_string(),
        Val::F64(bits) => f64::from_bits(*bits).to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_integers_in_range() {
        assert_eq!(
            parse_int("-1", i32::MIN as i128, u32::MAX as i128),
            Some(-1)
        );
        assert_eq!(parse_int("0xff", 0, 255), Some(255));
        assert_eq!(parse_int("256", 0, 255), None);
        assert_eq!(parse_int("1.5", 0, 255), None);
        assert_eq!(parse_int("", 0, 255), None);
        match parse_value(&ValType::I32, "4294967295") {
            Some(Val::I32(v)) => assert_eq!(v, -1),
            other => panic!("{other:?}"),
        }
    }
}
