//! CEL lexer and parser (the subset of the CEL grammar kube-sim supports).
//!
//! Grammar (cel-spec `langdef.md`):
//! ```text
//! Expr    = ConditionalOr ["?" ConditionalOr ":" Expr] ;
//! ConditionalOr  = [ConditionalOr "||"] ConditionalAnd ;
//! ConditionalAnd = [ConditionalAnd "&&"] Relation ;
//! Relation = [Relation Relop] Addition ;     Relop = "<" | "<=" | ">=" | ">" | "==" | "!=" | "in"
//! Addition = [Addition ("+" | "-")] Multiplication ;
//! Multiplication = [Multiplication ("*" | "/" | "%")] Unary ;
//! Unary   = Member | "!" {"!"} Member | "-" {"-"} Member ;
//! Member  = Primary | Member "." IDENT ["(" [ExprList] ")"] | Member "[" Expr "]" ;
//! Primary = ["."] IDENT ["(" [ExprList] ")"] | "(" Expr ")" | "[" [ExprList] [","] "]"
//!         | "{" [MapInits] [","] "}" | LITERAL ;
//! ```
//! Macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`) are expanded while parsing,
//! as cel-go does. Message construction (`T{...}`), optional syntax (`?.`, `[?`), bytes literals
//! and reserved words are rejected.

use super::CompileError;

/// A position: character offset into the source.
pub type Pos = usize;

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinOp {
    pub fn cel_name(self) -> &'static str {
        match self {
            BinOp::Eq => "_==_",
            BinOp::Ne => "_!=_",
            BinOp::Lt => "_<_",
            BinOp::Le => "_<=_",
            BinOp::Gt => "_>_",
            BinOp::Ge => "_>=_",
            BinOp::In => "@in",
            BinOp::Add => "_+_",
            BinOp::Sub => "_-_",
            BinOp::Mul => "_*_",
            BinOp::Div => "_/_",
            BinOp::Mod => "_%_",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompKind {
    All,
    Exists,
    ExistsOne,
    Map,
    Filter,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Lit),
    Ident(String, Pos),
    Select(Box<Expr>, String, Pos),
    /// `has(operand.field)`.
    Has(Box<Expr>, String, Pos),
    Index(Box<Expr>, Box<Expr>, Pos),
    /// A function call: global (`target == None`) or receiver-style.
    Call(Option<Box<Expr>>, String, Vec<Expr>, Pos),
    List(Vec<Expr>),
    Map(Vec<(Expr, Expr)>, Pos),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>, Pos),
    Binary(BinOp, Box<Expr>, Box<Expr>, Pos),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// A comprehension macro: `range.kind(var, [filter,] body)`.
    Comp {
        kind: CompKind,
        range: Box<Expr>,
        var: String,
        filter: Option<Box<Expr>>,
        body: Box<Expr>,
        pos: Pos,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(u64),
    Uint(u64),
    Double(f64),
    Str(String),
    Ident(String),
    Punct(&'static str),
    Eof,
}

const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

struct Lexer<'a> {
    chars: Vec<char>,
    i: usize,
    _src: &'a str,
}

impl Lexer<'_> {
    fn err(&self, pos: Pos, msg: impl Into<String>) -> CompileError {
        CompileError::Syntax {
            pos,
            msg: msg.into(),
        }
    }

    fn peek(&self, o: usize) -> Option<char> {
        self.chars.get(self.i + o).copied()
    }

    fn tokens(mut self) -> Result<Vec<(Tok, Pos)>, CompileError> {
        let mut out = Vec::new();
        loop {
            // whitespace and comments
            while let Some(c) = self.peek(0) {
                if c.is_whitespace() {
                    self.i += 1;
                } else if c == '/' && self.peek(1) == Some('/') {
                    while let Some(c) = self.peek(0) {
                        if c == '\n' {
                            break;
                        }
                        self.i += 1;
                    }
                } else {
                    break;
                }
            }
            let start = self.i;
            let Some(c) = self.peek(0) else {
                out.push((Tok::Eof, start));
                return Ok(out);
            };
            let tok = if c.is_ascii_digit()
                || (c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit()))
            {
                self.number()?
            } else if c == '_' || c.is_ascii_alphabetic() {
                let mut s = String::new();
                while let Some(c) = self.peek(0) {
                    if c == '_' || c.is_ascii_alphanumeric() {
                        s.push(c);
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                let next = self.peek(0);
                if (s == "r" || s == "R") && matches!(next, Some('"' | '\'')) {
                    self.string(true)?
                } else if (s == "b"
                    || s == "B"
                    || s.eq_ignore_ascii_case("rb")
                    || s.eq_ignore_ascii_case("br"))
                    && matches!(next, Some('"' | '\''))
                {
                    return Err(CompileError::Unsupported("bytes literals".to_string()));
                } else {
                    Tok::Ident(s)
                }
            } else if c == '"' || c == '\'' {
                self.string(false)?
            } else {
                const PUNCT: &[&str] = &[
                    "&&", "||", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ".", ",",
                    ":", "?", "!", "<", ">", "+", "-", "*", "/", "%",
                ];
                let rest: String = self.chars[self.i..].iter().take(2).collect();
                let Some(p) = PUNCT.iter().find(|p| rest.starts_with(**p)) else {
                    return Err(self.err(
                        start,
                        format!("Syntax error: token recognition error at: '{c}'"),
                    ));
                };
                self.i += p.chars().count();
                if *p == "?." {
                    return Err(CompileError::Unsupported(
                        "optional field selection '?.'".into(),
                    ));
                }
                Tok::Punct(p)
            };
            out.push((tok, start));
        }
    }

    fn number(&mut self) -> Result<Tok, CompileError> {
        let start = self.i;
        if self.peek(0) == Some('0') && matches!(self.peek(1), Some('x' | 'X')) {
            self.i += 2;
            let mut s = String::new();
            while let Some(c) = self.peek(0).filter(char::is_ascii_hexdigit) {
                s.push(c);
                self.i += 1;
            }
            let v =
                u64::from_str_radix(&s, 16).map_err(|_| self.err(start, "invalid int literal"))?;
            if matches!(self.peek(0), Some('u' | 'U')) {
                self.i += 1;
                return Ok(Tok::Uint(v));
            }
            return Ok(Tok::Int(v));
        }
        let mut s = String::new();
        let mut is_float = false;
        while let Some(c) = self.peek(0).filter(char::is_ascii_digit) {
            s.push(c);
            self.i += 1;
        }
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|d| d.is_ascii_digit()) {
            is_float = true;
            s.push('.');
            self.i += 1;
            while let Some(c) = self.peek(0).filter(char::is_ascii_digit) {
                s.push(c);
                self.i += 1;
            }
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let save = self.i;
            let mut e = String::from("e");
            self.i += 1;
            if let Some(sign @ ('+' | '-')) = self.peek(0) {
                e.push(sign);
                self.i += 1;
            }
            if self.peek(0).is_some_and(|d| d.is_ascii_digit()) {
                while let Some(c) = self.peek(0).filter(char::is_ascii_digit) {
                    e.push(c);
                    self.i += 1;
                }
                s.push_str(&e);
                is_float = true;
            } else {
                self.i = save;
            }
        }
        if is_float {
            let v: f64 = s
                .parse()
                .map_err(|_| self.err(start, "invalid double literal"))?;
            return Ok(Tok::Double(v));
        }
        let v: u64 = s
            .parse()
            .map_err(|_| self.err(start, format!("invalid int literal: {s}")))?;
        if matches!(self.peek(0), Some('u' | 'U')) {
            self.i += 1;
            return Ok(Tok::Uint(v));
        }
        Ok(Tok::Int(v))
    }

    fn string(&mut self, raw: bool) -> Result<Tok, CompileError> {
        let start = self.i;
        let q = self.peek(0).unwrap_or('"');
        let triple = self.peek(1) == Some(q) && self.peek(2) == Some(q);
        self.i += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(self.err(
                    start,
                    "Syntax error: token recognition error: unterminated string",
                ));
            };
            if triple {
                if c == q && self.peek(1) == Some(q) && self.peek(2) == Some(q) {
                    self.i += 3;
                    break;
                }
            } else if c == q {
                self.i += 1;
                break;
            } else if c == '\n' || c == '\r' {
                return Err(self.err(
                    start,
                    "Syntax error: token recognition error: newline in string",
                ));
            }
            if c == '\\' && !raw {
                self.i += 1;
                let e = self
                    .peek(0)
                    .ok_or_else(|| self.err(start, "Syntax error: invalid escape"))?;
                self.i += 1;
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '\\' | '\'' | '"' | '`' | '?' => out.push(e),
                    'x' | 'X' | 'u' | 'U' => {
                        let n = match e {
                            'x' | 'X' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n).filter_map(|k| self.peek(k)).collect();
                        if hex.chars().count() != n || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                            return Err(self.err(start, "Syntax error: invalid escape sequence"));
                        }
                        self.i += n;
                        let cp = u32::from_str_radix(&hex, 16).unwrap_or(0);
                        out.push(char::from_u32(cp).ok_or_else(|| {
                            self.err(start, "Syntax error: invalid unicode code point")
                        })?);
                    }
                    '0'..='3' => {
                        let oct: String = std::iter::once(e)
                            .chain((0..2).filter_map(|k| self.peek(k)))
                            .collect();
                        if oct.len() != 3 || !oct.chars().all(|h| ('0'..='7').contains(&h)) {
                            return Err(self.err(start, "Syntax error: invalid octal escape"));
                        }
                        self.i += 2;
                        let cp = u32::from_str_radix(&oct, 8).unwrap_or(0);
                        out.push(char::from_u32(cp).unwrap_or('\0'));
                    }
                    _ => return Err(self.err(start, "Syntax error: invalid escape sequence")),
                }
                continue;
            }
            out.push(c);
            self.i += 1;
        }
        Ok(Tok::Str(out))
    }
}

pub struct Parser {
    toks: Vec<(Tok, Pos)>,
    i: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 250;

pub fn parse(src: &str) -> Result<Expr, CompileError> {
    let toks = Lexer {
        chars: src.chars().collect(),
        i: 0,
        _src: src,
    }
    .tokens()?;
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        Tok::Eof => Ok(e),
        t => Err(p.err(format!("Syntax error: extraneous input {}", show(t)))),
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Eof => "'<EOF>'".into(),
        Tok::Int(v) => format!("'{v}'"),
        Tok::Uint(v) => format!("'{v}u'"),
        Tok::Double(v) => format!("'{v}'"),
        Tok::Str(s) => format!("'\"{s}\"'"),
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Punct(p) => format!("'{p}'"),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn pos(&self) -> Pos {
        self.toks[self.i].1
    }
    fn bump(&mut self) -> Tok {
        let t = self.toks[self.i].0.clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }
    fn eat(&mut self, p: &str) -> bool {
        if self.is(p) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn err(&self, msg: impl Into<String>) -> CompileError {
        CompileError::Syntax {
            pos: self.pos(),
            msg: msg.into(),
        }
    }
    fn expect(&mut self, p: &str) -> Result<(), CompileError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.err(format!(
                "Syntax error: mismatched input {} expecting '{p}'",
                show(self.peek())
            )))
        }
    }

    fn expr(&mut self) -> Result<Expr, CompileError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("expression recursion limit exceeded"));
        }
        let c = self.or()?;
        let r = if self.eat("?") {
            let t = self.or()?;
            self.expect(":")?;
            let f = self.expr()?;
            Expr::Cond(Box::new(c), Box::new(t), Box::new(f))
        } else {
            c
        };
        self.depth -= 1;
        Ok(r)
    }

    fn or(&mut self) -> Result<Expr, CompileError> {
        let mut l = self.and()?;
        while self.eat("||") {
            let r = self.and()?;
            l = Expr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, CompileError> {
        let mut l = self.relation()?;
        while self.eat("&&") {
            let r = self.relation()?;
            l = Expr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn relation(&mut self) -> Result<Expr, CompileError> {
        let mut l = self.addition()?;
        loop {
            let pos = self.pos();
            let op = match self.peek() {
                Tok::Punct("<") => BinOp::Lt,
                Tok::Punct("<=") => BinOp::Le,
                Tok::Punct(">") => BinOp::Gt,
                Tok::Punct(">=") => BinOp::Ge,
                Tok::Punct("==") => BinOp::Eq,
                Tok::Punct("!=") => BinOp::Ne,
                Tok::Ident(s) if s == "in" => BinOp::In,
                _ => return Ok(l),
            };
            self.bump();
            let r = self.addition()?;
            l = Expr::Binary(op, Box::new(l), Box::new(r), pos);
        }
    }

    fn addition(&mut self) -> Result<Expr, CompileError> {
        let mut l = self.multiplication()?;
        loop {
            let pos = self.pos();
            let op = if self.is("+") {
                BinOp::Add
            } else if self.is("-") {
                BinOp::Sub
            } else {
                return Ok(l);
            };
            self.bump();
            let r = self.multiplication()?;
            l = Expr::Binary(op, Box::new(l), Box::new(r), pos);
        }
    }

    fn multiplication(&mut self) -> Result<Expr, CompileError> {
        let mut l = self.unary()?;
        loop {
            let pos = self.pos();
            let op = if self.is("*") {
                BinOp::Mul
            } else if self.is("/") {
                BinOp::Div
            } else if self.is("%") {
                BinOp::Mod
            } else {
                return Ok(l);
            };
            self.bump();
            let r = self.unary()?;
            l = Expr::Binary(op, Box::new(l), Box::new(r), pos);
        }
    }

    fn unary(&mut self) -> Result<Expr, CompileError> {
        if self.is("!") {
            let mut n = 0;
            while self.eat("!") {
                n += 1;
            }
            let mut e = self.member()?;
            for _ in 0..n {
                e = Expr::Not(Box::new(e));
            }
            return Ok(e);
        }
        if self.is("-") {
            let mut positions = Vec::new();
            while self.is("-") {
                positions.push(self.pos());
                self.bump();
            }
            // A negated int literal is a literal (so that -9223372036854775808 parses).
            let mut e = match self.peek().clone() {
                Tok::Int(v) if !self.next_is_member_op() => {
                    let pos = self.pos();
                    self.bump();
                    positions.pop();
                    if v > 9_223_372_036_854_775_808 {
                        return Err(CompileError::Syntax {
                            pos,
                            msg: "invalid int literal".into(),
                        });
                    }
                    Expr::Lit(Lit::Int((v as i128).wrapping_neg() as i64))
                }
                Tok::Double(v) if !self.next_is_member_op() => {
                    self.bump();
                    positions.pop();
                    Expr::Lit(Lit::Double(-v))
                }
                _ => self.member()?,
            };
            for p in positions.into_iter().rev() {
                e = Expr::Neg(Box::new(e), p);
            }
            return Ok(e);
        }
        self.member()
    }

    fn next_is_member_op(&self) -> bool {
        matches!(self.toks.get(self.i + 1), Some((Tok::Punct("." | "["), _)))
    }

    fn member(&mut self) -> Result<Expr, CompileError> {
        let mut e = self.primary()?;
        loop {
            if self.is(".") {
                let pos = self.pos();
                self.bump();
                if self.is("?") {
                    return Err(CompileError::Unsupported(
                        "optional field selection '.?'".into(),
                    ));
                }
                let name = match self.bump() {
                    Tok::Ident(s) => s,
                    t => {
                        return Err(CompileError::Syntax {
                            pos,
                            msg: format!(
                                "Syntax error: mismatched input {} expecting IDENTIFIER",
                                show(&t)
                            ),
                        });
                    }
                };
                if self.is("(") {
                    let call_pos = self.pos();
                    self.bump();
                    let args = self.args(")")?;
                    e = self.method(e, name, args, call_pos)?;
                } else {
                    e = Expr::Select(Box::new(e), name, pos);
                }
            } else if self.is("[") {
                let pos = self.pos();
                self.bump();
                if self.is("?") {
                    return Err(CompileError::Unsupported("optional index '[?'".into()));
                }
                let idx = self.expr()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(idx), pos);
            } else if self.is("{") {
                return Err(CompileError::Unsupported("message construction".into()));
            } else {
                return Ok(e);
            }
        }
    }

    fn args(&mut self, close: &str) -> Result<Vec<Expr>, CompileError> {
        let mut args = Vec::new();
        if self.eat(close) {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(",") {
                if self.eat(close) {
                    return Ok(args);
                }
                continue;
            }
            self.expect(close)?;
            return Ok(args);
        }
    }

    fn method(
        &mut self,
        target: Expr,
        name: String,
        args: Vec<Expr>,
        pos: Pos,
    ) -> Result<Expr, CompileError> {
        let kind = match name.as_str() {
            "all" => Some(CompKind::All),
            "exists" => Some(CompKind::Exists),
            "exists_one" | "existsOne" => Some(CompKind::ExistsOne),
            "map" => Some(CompKind::Map),
            "filter" => Some(CompKind::Filter),
            _ => None,
        };
        let Some(kind) = kind else {
            return Ok(Expr::Call(Some(Box::new(target)), name, args, pos));
        };
        let arity_ok = match kind {
            CompKind::Map => args.len() == 2 || args.len() == 3,
            _ => args.len() == 2,
        };
        if !arity_ok {
            if args.len() == 3 && kind != CompKind::Map {
                return Err(CompileError::Unsupported(format!(
                    "two-variable comprehension macro \"{name}\""
                )));
            }
            return Err(CompileError::Syntax {
                pos,
                msg: format!("no matching overload for macro '{name}'"),
            });
        }
        let mut args = args.into_iter();
        let var = match args.next() {
            Some(Expr::Ident(v, _)) => v,
            _ => {
                return Err(CompileError::Syntax {
                    pos,
                    msg: "argument must be a simple name".into(),
                });
            }
        };
        let (filter, body) = if kind == CompKind::Map && args.len() == 2 {
            let f = args.next().expect("filter");
            (Some(Box::new(f)), args.next().expect("body"))
        } else {
            (None, args.next().expect("body"))
        };
        Ok(Expr::Comp {
            kind,
            range: Box::new(target),
            var,
            filter,
            body: Box::new(body),
            pos,
        })
    }

    fn primary(&mut self) -> Result<Expr, CompileError> {
        let pos = self.pos();
        match self.bump() {
            Tok::Int(v) => {
                if v > i64::MAX as u64 {
                    return Err(CompileError::Syntax {
                        pos,
                        msg: "invalid int literal".into(),
                    });
                }
                Ok(Expr::Lit(Lit::Int(v as i64)))
            }
            Tok::Uint(v) => Ok(Expr::Lit(Lit::Uint(v))),
            Tok::Double(v) => Ok(Expr::Lit(Lit::Double(v))),
            Tok::Str(s) => Ok(Expr::Lit(Lit::Str(s))),
            Tok::Ident(s) => {
                if RESERVED.contains(&s.as_str()) {
                    return Err(CompileError::Syntax {
                        pos,
                        msg: format!("reserved identifier: {s}"),
                    });
                }
                match s.as_str() {
                    "true" => return Ok(Expr::Lit(Lit::Bool(true))),
                    "false" => return Ok(Expr::Lit(Lit::Bool(false))),
                    "null" => return Ok(Expr::Lit(Lit::Null)),
                    _ => {}
                }
                if self.is("(") {
                    let call_pos = self.pos();
                    self.bump();
                    let args = self.args(")")?;
                    if s == "has" {
                        return match args.as_slice() {
                            [Expr::Select(operand, field, _)] => {
                                Ok(Expr::Has(operand.clone(), field.clone(), call_pos))
                            }
                            _ => Err(CompileError::Syntax {
                                pos: call_pos,
                                msg: "invalid argument to has() macro".into(),
                            }),
                        };
                    }
                    return Ok(Expr::Call(None, s, args, call_pos));
                }
                Ok(Expr::Ident(s, pos))
            }
            Tok::Punct("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("[") => Ok(Expr::List(self.args("]")?)),
            Tok::Punct("{") => {
                let mut entries = Vec::new();
                if !self.eat("}") {
                    loop {
                        if self.is("?") {
                            return Err(CompileError::Unsupported(
                                "optional map entries '?k: v'".into(),
                            ));
                        }
                        let k = self.expr()?;
                        self.expect(":")?;
                        let v = self.expr()?;
                        entries.push((k, v));
                        if self.eat(",") {
                            if self.eat("}") {
                                break;
                            }
                            continue;
                        }
                        self.expect("}")?;
                        break;
                    }
                }
                Ok(Expr::Map(entries, pos))
            }
            Tok::Punct(".") => Err(CompileError::Unsupported(
                "leading-dot (root namespace) identifiers".into(),
            )),
            t => Err(CompileError::Syntax {
                pos,
                msg: format!(
                    "Syntax error: mismatched input {} expecting <expression>",
                    show(&t)
                ),
            }),
        }
    }
}
