//! `lab graph`: the lab's networks, nodes (container routers, the nodes that forward, drawn
//! as diamonds), netyard routers (hexagons, their NAT interface marked) and their links,
//! impaired ones marked, as Graphviz dot, Mermaid, or an SVG drawn here. Pure: the lab file
//! in, text out.
//!
//! The SVG is written by hand: the crates that lay out graphs (layout-rs, and graphviz
//! bindings needing the C library) are either unmaintained or a system package; a lab is a
//! bipartite graph of a few dozen vertices, which a layered layout (breadth-first from the
//! first node, alternating nodes and networks) draws readably.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use super::file::{LabFile, LinkDecl, NodeDecl};

/// One edge: a node's interface on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    node: String,
    network: String,
    label: String,
    impaired: Option<String>,
}

fn is_router(n: &NodeDecl) -> bool {
    n.sysctls
        .iter()
        .any(|(k, v)| k.ends_with(".ip_forward") && v.text() == "1")
        || n.networks.iter().any(|a| a.trusted)
}

fn impairment(l: &LinkDecl) -> String {
    let mut parts = Vec::new();
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k} {v}"));
        }
    };
    add("delay", &l.delay);
    add("jitter", &l.jitter);
    add("loss", &l.loss);
    add("loss-burst", &l.loss_burst);
    add("duplicate", &l.duplicate);
    add("corrupt", &l.corrupt);
    add("reorder", &l.reorder);
    add("rate", &l.rate);
    if let Some(d) = &l.direction {
        parts.push(format!("({d})"));
    }
    parts.join(" ")
}

/// What a vertex on the node side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Node,
    /// A node that forwards (a container router).
    NodeRouter,
    /// A netyard router.
    Router,
}

/// The node-side vertices: nodes, then netyard routers (the plan keeps their names apart).
fn vertices(lab: &LabFile) -> Vec<(&str, Kind)> {
    lab.nodes
        .iter()
        .map(|(n, d)| {
            let k = if is_router(d) {
                Kind::NodeRouter
            } else {
                Kind::Node
            };
            (n.as_str(), k)
        })
        .chain(lab.routers.keys().map(|r| (r.as_str(), Kind::Router)))
        .collect()
}

fn edges(lab: &LabFile) -> Vec<Edge> {
    let mut v = Vec::new();
    let impaired = |name: &str, network: &str| {
        let imp: Vec<String> = lab
            .links
            .iter()
            .filter(|l| l.node == name && l.network == network)
            .map(impairment)
            .collect();
        (!imp.is_empty()).then(|| imp.join("; "))
    };
    for (name, n) in &lab.nodes {
        for (i, a) in n.networks.iter().enumerate() {
            v.push(Edge {
                node: name.clone(),
                network: a.network.clone(),
                label: format!("eth{i} {}", a.ip.as_deref().unwrap_or("auto")),
                impaired: impaired(name, &a.network),
            });
        }
    }
    for (name, r) in &lab.routers {
        for a in &r.networks {
            let mut label = a.ip.clone().unwrap_or_else(|| "auto".into());
            if r.nat.as_deref() == Some(a.network.as_str()) {
                label.push_str(" NAT");
            }
            v.push(Edge {
                node: name.clone(),
                network: a.network.clone(),
                label,
                impaired: impaired(name, &a.network),
            });
        }
    }
    v
}

fn net_label(lab: &LabFile, name: &str) -> String {
    let n = lab.networks.get(name);
    let mut l = name.to_string();
    if let Some(s) = n.and_then(|n| n.subnet.as_ref()) {
        l.push('\n');
        l.push_str(s);
    }
    if n.is_some_and(|n| n.internal) {
        l.push_str("\ninternal");
    }
    if let Some(v) = n.and_then(|n| n.vxlan.as_ref()) {
        let _ = write!(l, "\nvxlan {}", v.vni);
    }
    if let Some(r) = n.and_then(|n| n.gateway_router.as_ref()) {
        let _ = write!(l, "\ngateway {r}");
    }
    l
}

fn id(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{kind}_{clean}")
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Graphviz dot (`dot -Tsvg`).
pub fn dot(lab: &LabFile, name: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "graph \"{}\" {{", dot_escape(name));
    o.push_str("  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n");
    for n in lab.networks.keys() {
        let _ = writeln!(
            o,
            "  {} [shape=ellipse, style=filled, fillcolor=\"#e8f0fe\", label=\"{}\"];",
            id("net", n),
            dot_escape(&net_label(lab, n))
        );
    }
    for (n, k) in vertices(lab) {
        let shape = match k {
            Kind::Node => "box",
            Kind::NodeRouter => "diamond",
            Kind::Router => "hexagon, style=filled, fillcolor=\"#fde7c8\"",
        };
        let _ = writeln!(
            o,
            "  {} [shape={shape}, label=\"{}\"];",
            id("node", n),
            dot_escape(n)
        );
    }
    for e in edges(lab) {
        match &e.impaired {
            None => {
                let _ = writeln!(
                    o,
                    "  {} -- {} [label=\"{}\"];",
                    id("node", &e.node),
                    id("net", &e.network),
                    dot_escape(&e.label)
                );
            }
            Some(i) => {
                let _ = writeln!(
                    o,
                    "  {} -- {} [label=\"{}\", color=red, fontcolor=red, style=dashed, penwidth=2];",
                    id("node", &e.node),
                    id("net", &e.network),
                    dot_escape(&format!("{}\n{i}", e.label))
                );
            }
        }
    }
    o.push_str("}\n");
    o
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;").replace('\n', "<br/>")
}

/// Mermaid (a `graph LR`; GitHub renders it in a ```mermaid block).
pub fn mermaid(lab: &LabFile) -> String {
    let mut o = String::from("graph LR\n");
    for n in lab.networks.keys() {
        let _ = writeln!(
            o,
            "  {}((\"{}\"))",
            id("net", n),
            mermaid_text(&net_label(lab, n))
        );
    }
    for (n, k) in vertices(lab) {
        let _ = match k {
            Kind::Node => writeln!(o, "  {}[\"{}\"]", id("node", n), mermaid_text(n)),
            Kind::NodeRouter => writeln!(o, "  {}{{\"{}\"}}", id("node", n), mermaid_text(n)),
            Kind::Router => writeln!(o, "  {}{{{{\"{}\"}}}}", id("node", n), mermaid_text(n)),
        };
    }
    let mut impaired = Vec::new();
    for (i, e) in edges(lab).into_iter().enumerate() {
        match &e.impaired {
            None => {
                let _ = writeln!(
                    o,
                    "  {} ---|\"{}\"| {}",
                    id("node", &e.node),
                    mermaid_text(&e.label),
                    id("net", &e.network)
                );
            }
            Some(imp) => {
                impaired.push(i);
                let _ = writeln!(
                    o,
                    "  {} -.-|\"{}\"| {}",
                    id("node", &e.node),
                    mermaid_text(&format!("{}\n{imp}", e.label)),
                    id("net", &e.network)
                );
            }
        }
    }
    for i in impaired {
        let _ = writeln!(o, "  linkStyle {i} stroke:red,stroke-width:2px");
    }
    o
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Column of every vertex: breadth-first from each not yet placed node, nodes and networks
/// alternating; vertices without an edge go in column 0.
fn layout(lab: &LabFile, edges: &[Edge]) -> BTreeMap<(bool, String), (usize, usize)> {
    let mut col: BTreeMap<(bool, String), usize> = BTreeMap::new();
    let starts = vertices(lab)
        .into_iter()
        .map(|(n, _)| (true, n.to_string()))
        .chain(lab.networks.keys().map(|n| (false, n.clone())));
    for s in starts {
        if col.contains_key(&s) {
            continue;
        }
        let base = 0;
        col.insert(s.clone(), base);
        let mut q = VecDeque::from([s]);
        while let Some(v) = q.pop_front() {
            let c = col[&v];
            for e in edges {
                let next = match &v {
                    (true, n) if *n == e.node => (false, e.network.clone()),
                    (false, n) if *n == e.network => (true, e.node.clone()),
                    _ => continue,
                };
                if !col.contains_key(&next) {
                    col.insert(next.clone(), c + 1);
                    q.push_back(next);
                }
            }
        }
    }
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    col.into_iter()
        .map(|(v, c)| {
            let r = rows.entry(c).or_default();
            let at = (c, *r);
            *r += 1;
            (v, at)
        })
        .collect()
}

/// An SVG drawing.
pub fn svg(lab: &LabFile, name: &str) -> String {
    const DX: usize = 190;
    const DY: usize = 110;
    const M: usize = 80;
    let es = edges(lab);
    let pos = layout(lab, &es);
    let cols = pos.values().map(|p| p.0).max().unwrap_or(0) + 1;
    let rows = pos.values().map(|p| p.1).max().unwrap_or(0) + 1;
    let (w, h) = (cols * DX + M, rows * DY + M + 30);
    let xy = |v: &(bool, String)| {
        pos.get(v)
            .map(|&(c, r)| (M + c * DX, M + 30 + r * DY))
            .unwrap_or((0, 0))
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(o, "<title>{}</title>", xml(name));
    let _ = writeln!(
        o,
        "<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">lab {}</text>",
        xml(name)
    );
    for e in &es {
        let (x1, y1) = xy(&(true, e.node.clone()));
        let (x2, y2) = xy(&(false, e.network.clone()));
        let (mx, my) = ((x1 + x2) / 2, (y1 + y2) / 2);
        let style = if e.impaired.is_some() {
            "stroke=\"red\" stroke-width=\"2.5\" stroke-dasharray=\"6,4\""
        } else {
            "stroke=\"#555\" stroke-width=\"1.5\""
        };
        let _ = writeln!(
            o,
            "<line class=\"link\" x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" {style}/>"
        );
        let _ = writeln!(
            o,
            "<text x=\"{mx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
            my.saturating_sub(4),
            xml(&e.label)
        );
        if let Some(i) = &e.impaired {
            let _ = writeln!(o, "<text class=\"impaired\" x=\"{mx}\" y=\"{}\" text-anchor=\"middle\" fill=\"red\">{}</text>", my + 12, xml(i));
        }
    }
    for n in lab.networks.keys() {
        let (x, y) = xy(&(false, n.clone()));
        let _ = writeln!(o, "<ellipse class=\"network\" cx=\"{x}\" cy=\"{y}\" rx=\"62\" ry=\"30\" fill=\"#e8f0fe\" stroke=\"#3367d6\"/>");
        for (i, line) in net_label(lab, n).lines().enumerate() {
            let _ = writeln!(
                o,
                "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                y - 4 + i * 14,
                xml(line)
            );
        }
    }
    for (n, k) in vertices(lab) {
        let (x, y) = xy(&(true, n.to_string()));
        if k == Kind::Router {
            let _ = writeln!(o, "<polygon class=\"netyard-router\" points=\"{},{y} {},{} {},{} {},{y} {},{} {},{}\" fill=\"#fde7c8\" stroke=\"#b05a00\"/>", x - 52, x - 30, y - 24, x + 30, y - 24, x + 52, x + 30, y + 24, x - 30, y + 24);
        } else if k == Kind::NodeRouter {
            let _ = writeln!(o, "<polygon class=\"router\" points=\"{},{y} {x},{} {},{y} {x},{}\" fill=\"#fef3e0\" stroke=\"#e37400\"/>", x - 50, y - 28, x + 50, y + 28);
        } else {
            let _ = writeln!(o, "<rect class=\"node\" x=\"{}\" y=\"{}\" width=\"96\" height=\"40\" rx=\"6\" fill=\"#f1f3f4\" stroke=\"#333\"/>", x - 48, y - 20);
        }
        let _ = writeln!(
            o,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>",
            y + 4,
            xml(n)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::file::parse;

    const LAB: &str = r#"
[networks.a]
subnet = "10.1.0.0/24"
[networks.b]
subnet = "10.2.0.0/24"
[nodes.h1]
networks = [{ network = "a", ip = "10.1.0.10" }]
[nodes.r]
sysctls = { "net.ipv4.ip_forward" = 1 }
networks = [{ network = "a", trusted = true }, { network = "b", trusted = true }]
[nodes."h<2>"]
networks = [{ network = "b" }]
[[links]]
network = "b"
node = "r"
delay = "20ms"
"#;

    #[test]
    fn dot_draws_every_vertex_and_marks_the_impaired_link() {
        let lab = parse(LAB, false).expect("parse");
        let d = dot(&lab, "t");
        for needle in [
            "net_a [shape=ellipse",
            "node_r [shape=diamond",
            "node_h1 [shape=box",
            "node_h1 -- net_a [label=\"eth0 10.1.0.10\"]",
            "node_r -- net_b [label=\"eth1 auto\\ndelay 20ms\", color=red",
            "node_h_2_ [shape=box, label=\"h<2>\"]",
        ] {
            assert!(d.contains(needle), "{needle} missing from:\n{d}");
        }
    }

    #[test]
    fn mermaid_uses_a_dotted_red_edge_for_impairment() {
        let lab = parse(LAB, false).expect("parse");
        let m = mermaid(&lab);
        assert!(m.starts_with("graph LR\n"));
        assert!(m.contains("node_r{\"r\"}"), "{m}");
        assert!(
            m.contains("node_r -.-|\"eth1 auto<br/>delay 20ms\"| net_b"),
            "{m}"
        );
        assert_eq!(m.matches("linkStyle").count(), 1, "{m}");
    }

    #[test]
    fn svg_is_well_formed_and_escapes_names() {
        let lab = parse(LAB, false).expect("parse");
        let s = svg(&lab, "t&t");
        assert!(s.starts_with("<svg ") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("class=\"network\"").count(), 2);
        assert_eq!(s.matches("class=\"node\"").count(), 2);
        assert_eq!(s.matches("class=\"router\"").count(), 1);
        assert_eq!(s.matches("class=\"link\"").count(), 4);
        assert_eq!(s.matches("class=\"impaired\"").count(), 1);
        assert!(s.contains("h&lt;2&gt;") && s.contains("t&amp;t"));
        assert!(!s.contains("h<2>"));
    }

    #[test]
    fn netyard_routers_are_hexagons_with_their_nat_interface_marked() {
        let text = format!(
            "{LAB}[networks.c]\ngateway_router = \"edge\"\n[routers.edge]\nnetworks = [{{ network = \"b\", ip = \"10.2.0.254\" }}, {{ network = \"c\" }}]\nnat = \"c\"\n"
        );
        let lab = parse(&text, false).expect("parse");
        let d = dot(&lab, "t");
        assert!(d.contains("node_edge [shape=hexagon"), "{d}");
        assert!(
            d.contains("node_edge -- net_b [label=\"10.2.0.254\"]"),
            "{d}"
        );
        assert!(d.contains("node_edge -- net_c [label=\"auto NAT\"]"), "{d}");
        assert!(d.contains("gateway edge"), "{d}");
        let m = mermaid(&lab);
        assert!(m.contains("node_edge{{\"edge\"}}"), "{m}");
        let s = svg(&lab, "t");
        assert_eq!(s.matches("class=\"netyard-router\"").count(), 1, "{s}");
        assert!(s.contains(">edge</text>"), "{s}");
        assert_eq!(s.matches("class=\"link\"").count(), 6);
    }

    #[test]
    fn layout_alternates_nodes_and_networks() {
        let lab = parse(LAB, false).expect("parse");
        let es = edges(&lab);
        let pos = layout(&lab, &es);
        // h1 sorts first: h1 (0) - a (1) - r (2) - b (3) - h<2> (4).
        let col = |n: bool, s: &str| pos[&(n, s.to_string())].0;
        assert_eq!(
            [
                col(true, "h<2>"),
                col(false, "b"),
                col(true, "r"),
                col(false, "a"),
                col(true, "h1")
            ],
            [4, 3, 2, 1, 0]
        );
    }
}
