//! Function prototypes from the kernel's BTF, and where the hooks find their arguments in them.
//!
//! The function hooks read arguments by position, and positions drift between kernels: a
//! parameter is added (`demote_folio_list` gained `memcg` in 6.16), renamed or retyped
//! (`should_numa_migrate_memory` took a `struct page *` in 6.1 and a `struct folio *` since
//! 6.2). Each hook names the parameters it reads by name and by type; [`resolve`] finds them in
//! the running kernel's prototype and fills [`HookArgs`], or says exactly what is missing, so a
//! drifted prototype makes its hook unavailable with a reason instead of reading a pointer as a
//! page count.
//!
//! The prototype text ([`Signature`]'s `Display`) is also the fixture format: one line per
//! function, captured in the VM test bed for each kernel of the matrix.

use std::fmt;

use cxl_trace_common::HookArgs;

/// One parameter: its name and its C type, qualifiers dropped (`struct folio *`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub ty: String,
}

/// A function's prototype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub func: String,
    pub params: Vec<Param>,
    pub ret: String,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}(", self.ret, self.func)?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}{}", p.ty, spaced(&p.ty, &p.name))?;
        }
        f.write_str(")")
    }
}

/// The separator between a type and a name: none after a `*`.
fn spaced(ty: &str, name: &str) -> String {
    if ty.ends_with('*') {
        name.to_string()
    } else {
        format!(" {name}")
    }
}

impl Signature {
    /// Parses the `Display` form: `unsigned int demote_folio_list(struct list_head *demote_folios, struct pglist_data *pgdat)`.
    pub fn parse(line: &str) -> Result<Self, String> {
        let bad = || format!("not a prototype: {line:?}");
        let open = line.find('(').ok_or_else(bad)?;
        let inner = line[open + 1..].strip_suffix(')').ok_or_else(bad)?;
        let (ret, func) = split_decl(line[..open].trim()).ok_or_else(bad)?;
        let mut params = Vec::new();
        for p in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (ty, name) = split_decl(p).ok_or_else(bad)?;
            params.push(Param { name, ty });
        }
        Ok(Self { func, params, ret })
    }

    /// Index of the parameter named `name`.
    fn position(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }
}

/// `struct folio *dst` -> (`struct folio *`, `dst`); `int node` -> (`int`, `node`).
fn split_decl(decl: &str) -> Option<(String, String)> {
    let cut = decl.rfind([' ', '*'])?;
    let name = decl[cut + 1..].trim();
    let ty = decl[..=cut].trim();
    if name.is_empty() || ty.is_empty() {
        return None;
    }
    Some((ty.to_string(), name.to_string()))
}

/// What a hook reads from one parameter: its role in the hook, the names it has had, and the
/// kind of type it must have.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    /// The [`HookArgs`] field it fills.
    pub slot: Slot,
    /// Names the parameter has had across kernels (the first is today's).
    pub names: &'static [&'static str],
    /// A type it must have.
    pub ty: Ty,
}

/// A kind of type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// A pointer to one of these structs.
    Ptr(&'static [&'static str]),
    /// An integer, enum or bool (of any width).
    Int,
    /// A `bool` (a truth value, not an errno-style int whose 0 means success).
    Bool,
}

impl Ty {
    fn accepts(self, ty: &str) -> bool {
        match self {
            Ty::Ptr(structs) => structs.iter().any(|s| ty == format!("struct {s} *")),
            Ty::Int => !ty.ends_with('*') && !ty.starts_with("struct ") && ty != "void",
            Ty::Bool => ty == "bool" || ty == "_Bool",
        }
    }

    fn describe(self) -> String {
        match self {
            Ty::Ptr(structs) => structs
                .iter()
                .map(|s| format!("struct {s} *"))
                .collect::<Vec<_>>()
                .join(" or "),
            Ty::Int => "an integer".into(),
            Ty::Bool => "a bool".into(),
        }
    }
}

/// A [`HookArgs`] field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    FaultAddress,
    FaultRegs,
    FaultRet,
    NumaLastCpupid,
    NumaMemNode,
    NumaPages,
    NumaFlags,
    FolioDst,
    FolioSrc,
    FolioRet,
    ShouldSrcNid,
    ShouldDstCpu,
    ShouldRet,
    NodeStatDelta,
    NodeStatItem,
    PrepareNode,
    PrepareRet,
    IsolateRet,
    DemotePgdat,
    DemoteRet,
}

impl Slot {
    fn set(self, a: &mut HookArgs, v: u8) {
        let f = match self {
            Slot::FaultAddress => &mut a.fault_address,
            Slot::FaultRegs => &mut a.fault_regs,
            Slot::FaultRet => &mut a.fault_ret,
            Slot::NumaLastCpupid => &mut a.numa_last_cpupid,
            Slot::NumaMemNode => &mut a.numa_mem_node,
            Slot::NumaPages => &mut a.numa_pages,
            Slot::NumaFlags => &mut a.numa_flags,
            Slot::FolioDst => &mut a.folio_dst,
            Slot::FolioSrc => &mut a.folio_src,
            Slot::FolioRet => &mut a.folio_ret,
            Slot::ShouldSrcNid => &mut a.should_src_nid,
            Slot::ShouldDstCpu => &mut a.should_dst_cpu,
            Slot::ShouldRet => &mut a.should_ret,
            Slot::NodeStatDelta => &mut a.node_stat_delta,
            Slot::NodeStatItem => &mut a.node_stat_item,
            Slot::PrepareNode => &mut a.prepare_node,
            Slot::PrepareRet => &mut a.prepare_ret,
            Slot::IsolateRet => &mut a.isolate_ret,
            Slot::DemotePgdat => &mut a.demote_pgdat,
            Slot::DemoteRet => &mut a.demote_ret,
        };
        *f = v;
    }
}

/// What one hooked function's programs read.
#[derive(Clone, Copy, Debug)]
pub struct HookSpec {
    pub func: &'static str,
    /// Older names of the function, tried in order when `func` is not in the kernel.
    pub aliases: &'static [&'static str],
    pub needs: &'static [Need],
    /// The return value's slot and type, when an exit program reads it.
    pub ret: Option<(Slot, Ty)>,
}

const FOLIO: &[&str] = &["folio"];

/// Every hooked function and what its programs read.
pub const HOOKS: &[HookSpec] = &[
    HookSpec {
        func: "handle_mm_fault",
        aliases: &[],
        needs: &[
            Need {
                slot: Slot::FaultAddress,
                names: &["address"],
                ty: Ty::Int,
            },
            Need {
                slot: Slot::FaultRegs,
                names: &["regs"],
                ty: Ty::Ptr(&["pt_regs"]),
            },
        ],
        ret: Some((Slot::FaultRet, Ty::Int)),
    },
    HookSpec {
        func: "task_numa_fault",
        aliases: &[],
        needs: &[
            Need {
                slot: Slot::NumaLastCpupid,
                names: &["last_cpupid"],
                ty: Ty::Int,
            },
            Need {
                slot: Slot::NumaMemNode,
                names: &["mem_node"],
                ty: Ty::Int,
            },
            Need {
                slot: Slot::NumaPages,
                names: &["pages"],
                ty: Ty::Int,
            },
            Need {
                slot: Slot::NumaFlags,
                names: &["flags"],
                ty: Ty::Int,
            },
        ],
        ret: None,
    },
    HookSpec {
        func: "move_to_new_folio",
        aliases: &[],
        needs: &[
            Need {
                slot: Slot::FolioDst,
                names: &["dst", "newfolio"],
                ty: Ty::Ptr(FOLIO),
            },
            Need {
                slot: Slot::FolioSrc,
                names: &["src", "folio"],
                ty: Ty::Ptr(FOLIO),
            },
        ],
        ret: Some((Slot::FolioRet, Ty::Int)),
    },
    HookSpec {
        func: "should_numa_migrate_memory",
        aliases: &[],
        needs: &[
            Need {
                slot: Slot::ShouldSrcNid,
                names: &["src_nid"],
                ty: Ty::Int,
            },
            Need {
                slot: Slot::ShouldDstCpu,
                names: &["dst_cpu"],
                ty: Ty::Int,
            },
        ],
        ret: Some((Slot::ShouldRet, Ty::Bool)),
    },
    HookSpec {
        func: "mod_node_page_state",
        aliases: &[],
        needs: &[
            Need {
                slot: Slot::NodeStatItem,
                names: &["item"],
                ty: Ty::Int,
            },
            Need {
                slot: Slot::NodeStatDelta,
                names: &["delta"],
                ty: Ty::Int,
            },
        ],
        ret: None,
    },
    HookSpec {
        func: "migrate_misplaced_folio_prepare",
        aliases: &[],
        needs: &[Need {
            slot: Slot::PrepareNode,
            names: &["node"],
            ty: Ty::Int,
        }],
        ret: Some((Slot::PrepareRet, Ty::Int)),
    },
    HookSpec {
        func: "folio_isolate_lru",
        aliases: &[],
        needs: &[],
        ret: Some((Slot::IsolateRet, Ty::Bool)),
    },
    HookSpec {
        func: "demote_folio_list",
        aliases: &["demote_page_list"],
        needs: &[Need {
            slot: Slot::DemotePgdat,
            names: &["pgdat"],
            ty: Ty::Ptr(&["pglist_data"]),
        }],
        ret: Some((Slot::DemoteRet, Ty::Int)),
    },
];

/// The spec of a hooked function, by its name or an older one.
pub fn spec(func: &str) -> Option<&'static HookSpec> {
    HOOKS
        .iter()
        .find(|h| h.func == func || h.aliases.contains(&func))
}

impl HookSpec {
    /// The name the function has in a kernel whose symbols pass `has`: today's, else the
    /// first older one present, else today's (to be reported missing).
    pub fn name_in(&self, has: impl Fn(&str) -> bool) -> &'static str {
        std::iter::once(&self.func)
            .chain(self.aliases)
            .find(|n| has(n))
            .copied()
            .unwrap_or(self.func)
    }
}

/// Most argument slots a hook may use: six argument registers for a kprobe, and the fexit
/// return slot after them.
const MAX_PARAMS: usize = 6;

/// Finds what `spec` reads in `sig` and writes the slots into `args`; on drift, the reason.
pub fn resolve(spec: &HookSpec, sig: &Signature, args: &mut HookArgs) -> Result<(), String> {
    let mut found = Vec::new();
    for need in spec.needs {
        let by_name = need.names.iter().find_map(|n| sig.position(n));
        let pos = match by_name {
            Some(p) => p,
            None => {
                // Renamed: accept the only parameter of the right type.
                let mut typed = sig
                    .params
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| need.ty.accepts(&p.ty) && matches!(need.ty, Ty::Ptr(_)));
                match (typed.next(), typed.next()) {
                    (Some((p, _)), None) => p,
                    _ => {
                        return Err(format!(
                            "prototype drift: `{sig}` has no parameter `{}` ({})",
                            need.names[0],
                            need.ty.describe()
                        ))
                    }
                }
            }
        };
        let p = &sig.params[pos];
        if !need.ty.accepts(&p.ty) {
            return Err(format!(
                "prototype drift: `{sig}`: parameter `{}` is `{}`, the hook reads {}",
                p.name,
                p.ty,
                need.ty.describe()
            ));
        }
        if pos >= MAX_PARAMS {
            return Err(format!(
                "`{sig}`: parameter `{}` is number {}, beyond the six in registers",
                p.name,
                pos + 1
            ));
        }
        found.push((need.slot, pos as u8));
    }
    if let Some((slot, ty)) = spec.ret {
        if !ty.accepts(&sig.ret) {
            return Err(format!(
                "prototype drift: `{sig}` returns `{}`, the hook reads {}",
                sig.ret,
                ty.describe()
            ));
        }
        if sig.params.len() > MAX_PARAMS {
            return Err(format!("`{sig}`: more than six parameters"));
        }
        found.push((slot, sig.params.len() as u8));
    }
    for (slot, pos) in found {
        slot.set(args, pos);
    }
    Ok(())
}

/// [`HookArgs`] for a kernel, and the hooks whose prototype drifted (by the function's name
/// in that kernel): `proto` gives a function's prototype (None: not in BTF, reported where the
/// hook attaches), `has` says whether kallsyms has a symbol.
pub fn resolve_all(
    proto: impl Fn(&str) -> Option<Signature>,
    has: impl Fn(&str) -> bool,
) -> (HookArgs, std::collections::BTreeMap<&'static str, String>) {
    let mut args = HookArgs::DEFAULT;
    let mut drift = std::collections::BTreeMap::new();
    for spec in HOOKS {
        let func = spec.name_in(&has);
        if let Some(sig) = proto(func) {
            if let Err(why) = resolve(spec, &sig, &mut args) {
                drift.insert(func, why);
            }
        }
    }
    (args, drift)
}

/// Prototypes from the running kernel's BTF.
pub mod btf {
    use btf_rs::{Btf, BtfType, Type};

    use super::{Param, Signature};

    /// Loads `/sys/kernel/btf/vmlinux`.
    pub fn load() -> Result<Btf, String> {
        Btf::from_file("/sys/kernel/btf/vmlinux")
            .map_err(|e| format!("cannot read /sys/kernel/btf/vmlinux: {e}"))
    }

    /// The prototype of `func`, or why there is none.
    pub fn signature(btf: &Btf, func: &str) -> Result<Signature, String> {
        let types = btf.resolve_types_by_name(func).map_err(|_| {
            format!("no BTF FUNC {func} in the kernel's BTF (inlined, or built without it)")
        })?;
        let f = types
            .iter()
            .find_map(|t| match t {
                Type::Func(f) => Some(f.clone()),
                _ => None,
            })
            .ok_or_else(|| format!("no BTF FUNC {func} in the kernel's BTF"))?;
        let Ok(Type::FuncProto(proto)) = btf.resolve_chained_type(&f) else {
            return Err(format!("BTF FUNC {func} has no prototype"));
        };
        let mut params = Vec::new();
        for p in &proto.parameters {
            if p.is_variadic() {
                params.push(Param {
                    name: "...".into(),
                    ty: "...".into(),
                });
                continue;
            }
            let name = btf.resolve_name(p).unwrap_or_default();
            let ty = btf
                .resolve_chained_type(p)
                .map(|t| c_type(btf, &t, 0))
                .unwrap_or_else(|_| "?".into());
            params.push(Param { name, ty });
        }
        let ret = btf
            .resolve_type_by_id(proto.return_type_id())
            .map(|t| c_type(btf, &t, 0))
            .unwrap_or_else(|_| "void".into());
        Ok(Signature {
            func: func.to_string(),
            params,
            ret,
        })
    }

    /// The value of `member` in `enum name`.
    pub fn enum_value(btf: &Btf, name: &str, member: &str) -> Option<u32> {
        btf.resolve_types_by_name(name)
            .ok()?
            .into_iter()
            .find_map(|t| match t {
                Type::Enum(e) => e
                    .members
                    .iter()
                    .find(|m| btf.resolve_name(*m).is_ok_and(|n| n == member))
                    .map(|m| m.val()),
                _ => None,
            })
    }

    /// Byte size of `struct name`.
    pub fn struct_size(btf: &Btf, name: &str) -> Option<u32> {
        btf.resolve_types_by_name(name)
            .ok()?
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) => u32::try_from(s.size()).ok(),
                _ => None,
            })
    }

    /// Byte offset of member `member` in `struct name`, looking through anonymous structs and
    /// unions (where `struct folio` keeps its fields).
    pub fn member_offset(btf: &Btf, name: &str, member: &str) -> Option<u32> {
        let st = btf
            .resolve_types_by_name(name)
            .ok()?
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) => Some(s),
                _ => None,
            })?;
        find_member(btf, &st, member, 0, 0).map(|bits| bits / 8)
    }

    fn find_member(
        btf: &Btf,
        st: &btf_rs::Struct,
        member: &str,
        base_bits: u32,
        depth: u32,
    ) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        for m in &st.members {
            let at = base_bits + m.bit_offset();
            let name = btf.resolve_name(m).unwrap_or_default();
            if name == member {
                return Some(at);
            }
            if name.is_empty() {
                if let Ok(Type::Struct(inner) | Type::Union(inner)) = btf.resolve_chained_type(m) {
                    if let Some(found) = find_member(btf, &inner, member, at, depth + 1) {
                        return Some(found);
                    }
                }
            }
        }
        None
    }

    /// A type as C spells it, qualifiers dropped.
    fn c_type(btf: &Btf, t: &Type, depth: u32) -> String {
        if depth > 16 {
            return "?".into();
        }
        let named = |prefix: &str, t: &dyn BtfType| {
            let n = btf.resolve_name(t).unwrap_or_default();
            if n.is_empty() {
                format!("{prefix}(anonymous)")
            } else {
                format!("{prefix}{n}")
            }
        };
        let next = |t: &dyn BtfType| {
            btf.resolve_chained_type(t)
                .map(|n| c_type(btf, &n, depth + 1))
                .unwrap_or_else(|_| "void".into())
        };
        match t {
            Type::Void => "void".into(),
            Type::Int(i) => named("", i),
            Type::Float(f) => named("", f),
            Type::Typedef(td) => named("", td),
            Type::Struct(s) => named("struct ", s),
            Type::Union(u) => named("union ", u),
            Type::Enum(e) => named("enum ", e),
            Type::Enum64(e) => named("enum ", e),
            Type::Fwd(f) => named("struct ", f),
            Type::Ptr(p) => {
                let inner = next(p);
                if inner.ends_with('*') {
                    format!("{inner}*")
                } else {
                    format!("{inner} *")
                }
            }
            Type::Const(c) | Type::Volatile(c) | Type::Restrict(c) => next(c),
            Type::TypeTag(tt) => next(tt),
            Type::FuncProto(_) => "fn".into(),
            other => other.name().into(),
        }
    }
}

#[cfg(test)]
mod tests;
