//! Unit tests of the condition parser: precedence, values, lists, errors with columns.

use super::*;

fn lit(t: &str) -> Lit {
    Lit {
        text: t.into(),
        quoted: false,
        col: 0,
    }
}

fn strip(e: Expr) -> Expr {
    // Columns make exact comparisons noisy: zero them.
    match e {
        Expr::And(v) => Expr::And(v.into_iter().map(strip).collect()),
        Expr::Or(v) => Expr::Or(v.into_iter().map(strip).collect()),
        Expr::Not(b) => Expr::Not(Box::new(strip(*b))),
        Expr::Cmp {
            field, op, value, ..
        } => Expr::Cmp {
            field,
            op,
            value: match value {
                Operand::One(l) => Operand::One(Lit { col: 0, ..l }),
                Operand::List(v) => {
                    Operand::List(v.into_iter().map(|l| Lit { col: 0, ..l }).collect())
                }
            },
            col: 0,
        },
        Expr::Exists { field, .. } => Expr::Exists { field, col: 0 },
        Expr::Name { name, .. } => Expr::Name { name, col: 0 },
    }
}

#[test]
fn precedence_and_operators() {
    let e = strip(parse("kind=exec and not (a.b in (x, 'y z') or c exists) or m").expect("parse"));
    let want = Expr::Or(vec![
        Expr::And(vec![
            Expr::Cmp {
                field: "kind".into(),
                op: Op::Eq,
                value: Operand::One(lit("exec")),
                col: 0,
            },
            Expr::Not(Box::new(Expr::Or(vec![
                Expr::Cmp {
                    field: "a.b".into(),
                    op: Op::In,
                    value: Operand::List(vec![
                        lit("x"),
                        Lit {
                            text: "y z".into(),
                            quoted: true,
                            col: 0,
                        },
                    ]),
                    col: 0,
                },
                Expr::Exists {
                    field: "c".into(),
                    col: 0,
                },
            ]))),
        ]),
        Expr::Name {
            name: "m".into(),
            col: 0,
        },
    ]);
    assert_eq!(e, want);
    for (src, op) in [
        ("a != 1", Op::Ne),
        ("a<1", Op::Lt),
        ("a <= 1", Op::Le),
        ("a>1", Op::Gt),
        ("a >= 1", Op::Ge),
        ("a startswith /x", Op::StartsWith),
        ("a endswith x", Op::EndsWith),
        ("a contains x", Op::Contains),
        ("a glob '*x'", Op::Glob),
    ] {
        assert!(
            matches!(parse(src), Ok(Expr::Cmp { op: o, .. }) if o == op),
            "{src}"
        );
    }
    assert!(
        matches!(parse("pod.label[app.kubernetes.io/name] = web"), Ok(Expr::Cmp { field, .. }) if field == "pod.label[app.kubernetes.io/name]")
    );
    assert!(
        matches!(parse("file.path = /etc/shadow"), Ok(Expr::Cmp { value: Operand::One(Lit { text, .. }), .. }) if text == "/etc/shadow")
    );
}

#[test]
fn syntax_errors_have_columns() {
    for (src, col) in [
        ("a = ", 5),
        ("(a = 1", 7),
        ("a = 1 b = 2", 7),
        ("and a", 1),
        ("a in (1 2)", 9),
        ("a = 'x", 5),
        ("", 1),
    ] {
        let e = parse(src).expect_err(src);
        assert_eq!(e.col, col, "{src}: {}", e.msg);
    }
}

#[test]
fn globs() {
    let g = |p: &str| Glob::new(p).expect("glob");
    assert!(
        g("/var/run/secrets/*/token")
            .matches("/var/run/secrets/kubernetes.io/serviceaccount/token")
    );
    assert!(g("/home/*/.ssh/id_*").matches("/home/alice/.ssh/id_ed25519"));
    assert!(!g("/home/*/.ssh/id_*").matches("/home/alice/.ssh/known_hosts"));
    assert!(g("file?.[ch]").matches("file1.c") && !g("file?.[ch]").matches("file1.o"));
    assert!(g("[!a]x").matches("bx") && !g("[!a]x").matches("ax"));
    assert!(g("*").matches("") && g("a*b*c").matches("aXXbYYc") && !g("a*b*c").matches("aXXbYY"));
    assert!(Glob::new("[abc").is_err());
    // Characters of several bytes are one character each, on both sides.
    assert!(g("/tmp/é?/*.ü").matches("/tmp/éß/x.ü") && !g("/tmp/é?/*.ü").matches("/tmp/é/x.ü"));
    assert!(g("*ö*").matches("aöb") && !g("?").matches("öö") && g("??").matches("öö"));
}
