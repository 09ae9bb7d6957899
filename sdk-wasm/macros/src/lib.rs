//! Attribute macros for `sdk-wasm`: `#[filter]`, `#[queue_selector]`, `#[allocate]`,
//! `#[txn_check]`. Use them through `sdk_wasm` (`#[sdk_wasm::filter]`); the generated code
//! refers to `::sdk_wasm`.
//!
//! Each macro keeps the function as written and adds `pub static FERROMQ_PLUGIN:
//! ::sdk_wasm::PluginDef` plus, on wasm32, the ABI exports (`::sdk_wasm::export_wasm!`).
//! Arguments are matched by type name: `Message`, the kind's context type
//! (`FilterContext`, `SelectContext`, `AllocateContext`, `CheckContext`), or anything
//! else by reference, which is the state built by `FromConfig` (at most one).
//!
//! Options: `name = "..."`, `version = "..."`, `schema = "..."` (manifest), `reads(tags,
//! ...)` or `reads()` (the message fields the plugin reads: `topic`, `tags`, `keys`, `properties`,
//! `metadata` for the numeric ones; frames then carry only those, the others read as
//! zero / empty), and for filters `needs_body` and `prefilter = path` (a
//! `fn(&State, &CqUnit) -> impl IntoVerdict`, `State` being `()` for stateless filters).

use plugin_api::MessageFields;
use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{parse_macro_input, FnArg, ItemFn, LitStr, Path, Type};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Filter,
    QueueSelector,
    Allocate,
    TxnCheck,
}

impl Kind {
    fn context_type(self) -> &'static str {
        match self {
            Kind::Filter => "FilterContext",
            Kind::QueueSelector => "SelectContext",
            Kind::Allocate => "AllocateContext",
            Kind::TxnCheck => "CheckContext",
        }
    }
    fn needs_message(self) -> bool {
        self != Kind::Allocate
    }
}

/// A message filter: `fn(&State?, &FilterContext?, &Message) -> bool | Verdict |
/// Result<_, E>`.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Filter, attr, item)
}

/// A queue selector: `fn(&State?, &SelectContext?, &Message) -> u32 | usize | Option<_> |
/// Result<_, E>` (an index into `ctx.queues`).
#[proc_macro_attribute]
pub fn queue_selector(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::QueueSelector, attr, item)
}

/// An allocation strategy: `fn(&State?, &AllocateContext) -> Vec<u32> | Vec<usize> |
/// Result<_, E>` (indices into `ctx.queues()`).
#[proc_macro_attribute]
pub fn allocate(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Allocate, attr, item)
}

/// A transaction check-back handler: `fn(&State?, &CheckContext?, &Message) ->
/// CheckDecision | Result<CheckDecision, E>`.
#[proc_macro_attribute]
pub fn txn_check(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::TxnCheck, attr, item)
}

#[derive(Default)]
struct Opts {
    name: Option<LitStr>,
    version: Option<LitStr>,
    schema: Option<LitStr>,
    prefilter: Option<Path>,
    needs_body: bool,
    /// `reads(...)`: the declared fields' bits.
    reads: Option<u16>,
}

enum Role {
    Message,
    Context,
    State(Box<Type>),
}

fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut opts = Opts::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            opts.name = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("version") {
            opts.version = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("schema") {
            opts.schema = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("prefilter") && kind == Kind::Filter {
            opts.prefilter = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("needs_body") && kind == Kind::Filter {
            opts.needs_body = true;
        } else if meta.path.is_ident("reads") && kind != Kind::Allocate {
            // `reads(tags, keys)`, or `reads()` for a plugin that reads no field.
            let list;
            syn::parenthesized!(list in meta.input);
            let names = syn::punctuated::Punctuated::<syn::Ident, syn::Token![,]>::parse_terminated(&list)?;
            let mut bits = 0u16;
            for name in names {
                // The body is declared with `needs_body`, not here.
                match MessageFields::from_name(&name.to_string()).filter(|f| *f != MessageFields::BODY) {
                    Some(f) => bits |= f.bits(),
                    None => {
                        return Err(syn::Error::new(
                            name.span(),
                            "unknown field; expected topic, tags, keys, properties or metadata",
                        ))
                    }
                }
            }
            opts.reads = Some(bits);
        } else {
            let extra = match kind {
                Kind::Filter => ", reads(...), prefilter, needs_body",
                Kind::Allocate => "",
                _ => ", reads(...)",
            };
            return Err(meta.error(format!("unknown argument; expected name, version, schema{extra}")));
        }
        Ok(())
    });
    parse_macro_input!(attr with parser);
    let func = parse_macro_input!(item as ItemFn);
    match generate(kind, &opts, &func) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn role(kind: Kind, ty: &Type) -> syn::Result<Role> {
    let Type::Reference(r) = ty else {
        return Err(syn::Error::new_spanned(
            ty,
            "plugin function arguments must be references (&Message, &State, ...)",
        ));
    };
    if let Type::Path(p) = &*r.elem {
        if let Some(last) = p.path.segments.last() {
            if last.ident == "Message" {
                return Ok(Role::Message);
            }
            if last.ident == kind.context_type() {
                return Ok(Role::Context);
            }
        }
    }
    Ok(Role::State(r.elem.clone()))
}

fn generate(kind: Kind, opts: &Opts, func: &ItemFn) -> syn::Result<TokenStream2> {
    let ident = &func.sig.ident;
    let mut state_ty: Option<Type> = None;
    let mut args = Vec::new();
    let (mut has_msg, mut has_ctx) = (false, false);
    for input in &func.sig.inputs {
        let FnArg::Typed(pt) = input else {
            return Err(syn::Error::new_spanned(input, "plugin functions are free functions"));
        };
        match role(kind, &pt.ty)? {
            Role::Message => {
                has_msg = true;
                args.push(quote!(__msg));
            }
            Role::Context => {
                has_ctx = true;
                args.push(quote!(__ctx));
            }
            Role::State(t) => {
                if state_ty.is_some() {
                    return Err(syn::Error::new_spanned(&pt.ty, "only one state argument is allowed"));
                }
                state_ty = Some(*t);
                args.push(quote!(__state));
            }
        }
    }
    if kind.needs_message() && !has_msg {
        return Err(syn::Error::new_spanned(&func.sig, "the function must take the message as `&Message`"));
    }
    if kind == Kind::Allocate && !has_ctx {
        return Err(syn::Error::new_spanned(&func.sig, "the function must take `&AllocateContext`"));
    }
    let state = state_ty.unwrap_or_else(|| syn::parse_quote!(()));
    let call = quote!(#ident(#(#args),*));
    let name = opts.name.clone().map_or_else(|| quote!(env!("CARGO_PKG_NAME")), |n| quote!(#n));
    let version = opts.version.clone().map_or_else(|| quote!(env!("CARGO_PKG_VERSION")), |v| quote!(#v));
    let schema = opts.schema.clone().unwrap_or_else(|| LitStr::new("", Span::call_site()));
    let mut flags = 0u16;
    if opts.prefilter.is_some() {
        flags |= 1;
    }
    if opts.needs_body {
        flags |= 2;
    }
    let reads = match opts.reads {
        Some(bits) => quote!(Some(::sdk_wasm::MessageFields::from_bits(#bits))),
        None => quote!(None),
    };
    let (kind_tokens, body) = match kind {
        Kind::Filter => {
            let pre = match &opts.prefilter {
                Some(p) => {
                    quote!(Some(|__unit: &::sdk_wasm::CqUnit| ::sdk_wasm::IntoVerdict::into_verdict(#p(__state, __unit))))
                }
                None => quote!(None::<fn(&::sdk_wasm::CqUnit) -> ::sdk_wasm::Verdict>),
            };
            (
                quote!(Filter),
                quote!(::sdk_wasm::rt::run_filter(__frame, __out,
                    |__ctx: &::sdk_wasm::FilterContext<'_>, __msg: &::sdk_wasm::Message<'_>| {
                        let _ = __ctx;
                        ::sdk_wasm::IntoVerdict::into_verdict(#call)
                    }, #pre)),
            )
        }
        Kind::QueueSelector => (
            quote!(QueueSelector),
            quote!(::sdk_wasm::rt::run_select(__frame, __out,
            |__ctx: &::sdk_wasm::SelectContext<'_>, __msg: &::sdk_wasm::Message<'_>| {
                let _ = __ctx;
                ::sdk_wasm::IntoQueue::into_queue(#call)
            })),
        ),
        Kind::Allocate => (
            quote!(Allocation),
            quote!(::sdk_wasm::rt::run_allocate(__frame, __out,
                |__ctx: &::sdk_wasm::AllocateContext<'_>| ::sdk_wasm::IntoAssignment::into_assignment(#call))),
        ),
        Kind::TxnCheck => (
            quote!(TxnCheck),
            quote!(::sdk_wasm::rt::run_check(__frame, __out,
            |__ctx: &::sdk_wasm::CheckContext, __msg: &::sdk_wasm::Message<'_>| {
                let _ = __ctx;
                ::sdk_wasm::IntoDecision::into_decision(#call)
            })),
        ),
    };
    let def = format_ident!("FERROMQ_PLUGIN");
    Ok(quote! {
        #func

        /// The plugin definition generated by `sdk_wasm`'s attribute macro.
        #[doc(hidden)]
        pub static #def: ::sdk_wasm::PluginDef = ::sdk_wasm::PluginDef {
            name: #name,
            version: #version,
            kind: ::sdk_wasm::PluginKind::#kind_tokens,
            flags: #flags,
            reads: #reads,
            config_schema: #schema,
            init: ::sdk_wasm::rt::init_state::<#state>,
            call: |__state, __frame, __out| {
                let __state: &#state = ::sdk_wasm::rt::state::<#state>(__state);
                let _ = __state;
                #body
            },
        };

        #[cfg(target_arch = "wasm32")]
        ::sdk_wasm::export_wasm!(#def);
    })
}
