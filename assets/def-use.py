"""runcell's def-use helper: which names a Python block defines, and which it uses from elsewhere.

Protocol, JSON lines: one request {"id": n, "source": "..."} on stdin, one reply
{"id": n, "defines": [...], "uses": [...], "error": null | "SyntaxError: ... (line N)"} on
stdout, in request order. A block that cannot be analysed replies with empty lists and the
error; the helper itself never exits on bad input.

Module-level code is walked in evaluation order, so that a name bound before it is read is not
a use (`x = 1; print(x)`) while one read first is (`print(x); x = 1`). Nested scopes
(functions, classes, lambdas, comprehensions) are resolved with `symtable`, which knows
Python's scoping rules: only their global names matter here. Function and lambda bodies run
later, so the globals they read are uses unless the block binds them at module level anywhere.

Usage: python3 -I def-use.py [--no-ipython]
"""

import ast
import builtins
import json
import re
import symtable
import sys
import threading

MAX_SOURCE_BYTES = 1 << 20
# JSON escapes a control character in at most 6 bytes: no valid request line is longer.
MAX_LINE_BYTES = 6 * MAX_SOURCE_BYTES + 4096
TOO_LARGE = f"the block is larger than {MAX_SOURCE_BYTES} bytes: it was not analysed"
# Names every block may read without another block defining them.
IMPLICIT = frozenset(dir(builtins)) | {"get_ipython", "display", "In", "Out", "exit", "quit"}
COMPREHENSION_TABLES = {
    ast.ListComp: "listcomp",
    ast.SetComp: "setcomp",
    ast.DictComp: "dictcomp",
    ast.GeneratorExp: "genexpr",
}
# Magics whose argument is Python code run in the user namespace: `%time x = 1` defines x.
CODE_MAGICS = {"time", "prun", "capture"}
# Magics whose code runs in a namespace of its own: it reads the user's names, binds none.
READ_ONLY_MAGICS = {"timeit"}
# IPython expands {expression} and $name in shell commands and most line magics.
INTERPOLATION = re.compile(r"(?<!\{)\{([^{}]+)\}(?!\})|(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")

use_ipython = "--no-ipython" not in sys.argv[1:]
transformer = None


def strip_magics(source):
    """Without IPython: shell and magic lines become `pass` (keeping line numbers and blocks)."""
    lines = source.split("\n")
    if lines and lines[0].lstrip().startswith("%%"):
        # A cell magic's body is usually not Python (%%bash, %%html…): analyse it only when it
        # is, and runs in the user's namespace.
        name = lines[0].lstrip()[2:].split(" ")[0]
        if name not in CODE_MAGICS:
            return ""
        lines[0] = ""
    out = []
    for line in lines:
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith(("%", "!")):
            line = indent + "pass"
        else:
            # `files = !ls` and `t = %time f()` still bind their name.
            line = re.sub(r"^(\s*[A-Za-z_][\w\s,]*?)\s*=\s*[!%].*$", r"\1 = None", line)
        out.append(line)
    return "\n".join(out)


def to_python(source):
    """Rewrites IPython syntax (magics, shell escapes, `obj?`) into the Python it runs as."""
    global transformer
    if transformer is None:
        transformer = False
        if use_ipython:
            try:
                from IPython.core.inputtransformer2 import TransformerManager

                transformer = TransformerManager()
            except Exception:
                pass
    if transformer is False:
        return strip_magics(source)
    try:
        return transformer.transform_cell(source)
    except Exception:
        return strip_magics(source)


def parse(source):
    """(tree, the Python text parsed): plain Python as it is, IPython syntax rewritten first."""
    try:
        return ast.parse(source), source
    except SyntaxError:
        transformed = to_python(source)
        if transformed == source:
            raise
        return ast.parse(transformed), transformed


def magic_call(node):
    """('run_line_magic', ['time', 'x = 1']) for get_ipython().run_line_magic('time', 'x = 1')."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    owner = node.func.value
    if not (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "get_ipython"
        and all(isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in node.args)
    ):
        return None
    return node.func.attr, [arg.value for arg in node.args]


class Scope:
    """The global names a nested scope reads and binds, from symtable."""

    def __init__(self):
        self.reads = set()  # read as the module-level code runs (class bodies, comprehensions)
        self.later_reads = set()  # read when a function or lambda is called
        self.binds = set()  # bound at module level as the code runs (walrus in a comprehension)
        self.later_binds = set()  # bound by `global x` in a function, when it is called


def table_kind(node):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return "function", node.name
    if isinstance(node, ast.ClassDef):
        return "class", node.name
    if isinstance(node, ast.Lambda):
        return "function", "lambda"
    return "function", COMPREHENSION_TABLES[type(node)]


def find_table(top, node):
    """The table of `node` in a symtable of its source alone. Decorators, defaults and
    annotations may hold scopes of their own, entered before the node's: the last match of the
    shallowest level is the node's."""
    kind, name = table_kind(node)
    level = top.get_children()
    while level:
        matches = [t for t in level if str(t.get_type()) == kind and t.get_name() == name]
        if matches:
            return matches[-1]
        level = [child for t in level for child in t.get_children()]
    return None


def collect(table, scope, later, augmented):
    """Adds the globals `table` and its children read and bind to `scope`. augmented() gives
    the names the scope's code assigns with `x += …` (computed only when needed: it walks the
    scope's code)."""
    kind = str(table.get_type())
    name = table.get_name()
    if kind == "function" and name not in COMPREHENSION_TABLES.values():
        later = True
    elif kind not in ("function", "class"):
        # Annotation and type-parameter scopes (newer Pythons) are evaluated lazily.
        later = True
    for symbol in table.get_symbols():
        sym = symbol.get_name()
        # symtable does not count the target of `x += 1` as read; with `global x` it is.
        read = symbol.is_referenced() or (symbol.is_declared_global() and sym in augmented())
        if symbol.is_global() and read:
            (scope.later_reads if later else scope.reads).add(sym)
        if symbol.is_declared_global() and (symbol.is_assigned() or symbol.is_imported()):
            (scope.later_binds if later else scope.binds).add(sym)
    for child in table.get_children():
        collect(child, scope, later, augmented)


def approximate_scope(node, later):
    """When symtable rejects a scope (e.g. `yield` in a comprehension): loads minus stores."""
    scope = Scope()
    stored = set()
    loaded = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (loaded if isinstance(sub.ctx, ast.Load) else stored).add(sub.id)
        elif isinstance(sub, ast.arg):
            stored.add(sub.arg)
    (scope.later_reads if later else scope.reads).update(loaded - stored)
    return scope


def index_tables(source):
    """The module's nested-scope tables by (kind, name, line), or None when symtable rejects
    the whole module (e.g. `return` outside a function): each scope is then looked up alone."""
    try:
        top = symtable.symtable(source, "<block>", "exec")
    except SyntaxError:
        return None
    index = {}
    for table in top.get_children():
        index.setdefault((str(table.get_type()), table.get_name(), table.get_lineno()), []).append(table)
    return index


def analyse_scope(node, index):
    later = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    kind, name = table_kind(node)
    tables = index.get((kind, name, node.lineno), ()) if index is not None else ()
    if len(tables) == 1:
        table = tables[0]
    else:
        # Several scopes of one kind and name on a line (two lambdas), or none: analyse the
        # scope's source alone.
        try:
            table = find_table(symtable.symtable(ast.unparse(node), "<block>", "exec"), node)
        except SyntaxError:
            table = None
    if table is None:
        return approximate_scope(node, later)
    found = []

    def augmented():
        if not found:
            targets = (sub.target for sub in ast.walk(node) if isinstance(sub, ast.AugAssign))
            found.append({target.id for target in targets if isinstance(target, ast.Name)})
        return found[0]

    scope = Scope()
    collect(table, scope, later, augmented)
    return scope


class ModuleWalker(ast.NodeVisitor):
    """Walks module-level code in evaluation order."""

    def __init__(self, index):
        self.index = index  # the symbol tables of the source walked, see index_tables
        self.bound = set()  # bound at module level so far
        self.defines = set()
        self.uses = set()
        self.later_reads = set()

    def read(self, name):
        if name not in self.bound and name not in IMPLICIT:
            self.uses.add(name)

    def bind(self, name):
        self.bound.add(name)
        self.defines.add(name)

    def result(self):
        # A function body reads globals when called, typically after the block has run.
        uses = self.uses | {n for n in self.later_reads if n not in self.bound and n not in IMPLICIT}
        return sorted(self.defines), sorted(uses)

    def visit_all(self, nodes):
        for node in nodes:
            self.visit(node)

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self.read(node.id)
        elif isinstance(node.ctx, ast.Del):
            # `del x` needs x to exist, and changes what x is for later blocks.
            self.read(node.id)
            self.bind(node.id)
        else:
            self.bind(node.id)

    def visit_Assign(self, node):
        self.visit(node.value)
        self.visit_all(node.targets)

    def visit_AugAssign(self, node):
        if isinstance(node.target, ast.Name):
            self.read(node.target.id)
            self.visit(node.value)
            self.bind(node.target.id)
        else:
            self.visit(node.target)  # `a[i] += 1` reads a and i, and binds nothing
            self.visit(node.value)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        if node.value is not None or not isinstance(node.target, ast.Name):
            self.visit(node.target)

    def visit_NamedExpr(self, node):
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node):
        self.visit(node.iter)
        self.visit(node.target)
        self.visit_all(node.body)
        self.visit_all(node.orelse)

    visit_AsyncFor = visit_For

    def visit_ExceptHandler(self, node):
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bind(node.name)
        self.visit_all(node.body)

    def visit_Import(self, node):
        for alias in node.names:
            self.bind(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node):
        for alias in node.names:
            if alias.name != "*":  # what a star import binds is unknowable here
                self.bind(alias.asname or alias.name)

    def visit_Global(self, node):
        pass

    visit_Nonlocal = visit_Global

    def visit_MatchAs(self, node):
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self.bind(node.name)

    def visit_MatchStar(self, node):
        if node.name:
            self.bind(node.name)

    def visit_MatchMapping(self, node):
        self.visit_all(node.keys)
        self.visit_all(node.patterns)
        if node.rest:
            self.bind(node.rest)

    def visit_FunctionDef(self, node):
        self.visit_all(node.decorator_list)
        args = node.args
        self.visit_all(args.defaults)
        self.visit_all([d for d in args.kw_defaults if d is not None])
        for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)
        if node.returns is not None:
            self.visit(node.returns)
        self.enter(node)
        self.bind(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.visit_all(node.decorator_list)
        self.visit_all(node.bases)
        self.visit_all(node.keywords)
        self.enter(node)
        self.bind(node.name)

    def visit_Lambda(self, node):
        self.visit_all(node.args.defaults)
        self.visit_all([d for d in node.args.kw_defaults if d is not None])
        self.enter(node)

    def visit_comprehension_node(self, node):
        # The outermost iterable is evaluated in the enclosing scope, the rest in the comprehension's.
        self.visit(node.generators[0].iter)
        self.enter(node)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_comprehension_node

    def enter(self, node):
        scope = analyse_scope(node, self.index)
        for name in sorted(scope.reads):
            self.read(name)
        self.later_reads |= scope.later_reads
        for name in scope.binds:
            self.bind(name)
        self.defines |= scope.later_binds

    def visit_Call(self, node):
        self.generic_visit(node)
        magic = magic_call(node)
        if magic is None:
            return
        method, args = magic
        if method == "run_line_magic" and len(args) == 2:
            name, line = args
            if name in CODE_MAGICS or name in READ_ONLY_MAGICS:
                self.inline(line, read_only=name in READ_ONLY_MAGICS)
            else:
                self.interpolated(line)
        elif method == "run_cell_magic" and len(args) == 3:
            name, line, body = args
            if name in READ_ONLY_MAGICS:
                self.inline(line + "\n" + body, read_only=True)  # %%timeit's line is setup code
            elif name in CODE_MAGICS:
                self.inline(body, read_only=False)
                if name == "capture":  # `%%capture out` binds out
                    target = next((w for w in line.split() if not w.startswith("-")), None)
                    if target is not None and target.isidentifier():
                        self.bind(target)
            else:
                self.interpolated(line)
        elif method in ("system", "getoutput") and len(args) == 1:
            self.interpolated(args[0])

    def inline(self, code, read_only):
        """Analyses a magic's code as if it stood here; read_only: its bindings do not persist."""
        try:
            tree, text = parse(code)
        except (SyntaxError, ValueError):
            return  # the magic fails when run: it binds nothing
        saved = (set(self.bound), set(self.defines), self.index)
        self.index = index_tables(text)
        self.visit_all(tree.body)
        self.index = saved[2]
        if read_only:
            self.bound, self.defines = saved[0], saved[1]

    def interpolated(self, text):
        for match in INTERPOLATION.finditer(text):
            expression = match.group(1) or match.group(2)
            try:
                tree = ast.parse(expression.strip(), mode="eval")
            except SyntaxError:
                continue  # IPython leaves what does not parse as it is
            saved = self.index
            self.index = None
            self.visit(tree.body)
            self.index = saved


def analyse(source):
    """(defines, uses, error) of one block."""
    if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        return [], [], TOO_LARGE
    try:
        tree, text = parse(source)
    except SyntaxError as error:
        line = f" (line {error.lineno})" if error.lineno else ""
        return [], [], f"{type(error).__name__}: {error.msg}{line}"
    except ValueError as error:  # null bytes, on Pythons that do not call it a SyntaxError
        return [], [], f"SyntaxError: {error}"
    walker = ModuleWalker(index_tables(text))
    walker.visit_all(tree.body)
    defines, uses = walker.result()
    return defines, uses, None


def request_id(head):
    """The id of a request line too long to parse: runcell writes the id first."""
    match = re.match(rb'\s*\{\s*"id"\s*:\s*(-?\d+)', head)
    return int(match.group(1)) if match else None


def serve(requests, replies):
    def reply(id, defines=(), uses=(), error=None):
        message = {"id": id, "defines": list(defines), "uses": list(uses), "error": error}
        replies.write(json.dumps(message).encode("ascii") + b"\n")
        replies.flush()

    while True:
        line = requests.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            head = line[:64]
            while line and not line.endswith(b"\n"):  # skip the rest of the request
                line = requests.readline(1 << 20)
            reply(request_id(head), error=TOO_LARGE)
            continue
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            id = request["id"]
            source = request["source"]
            if not isinstance(source, str):
                raise TypeError("source must be a string")
        except Exception as error:
            reply(request_id(line[:64]), error=f"invalid request: {error}")
            continue
        try:
            defines, uses, error = analyse(source)
        except (RecursionError, MemoryError) as failure:
            # The parser reports its own stack overflow as a MemoryError.
            error = f"{type(failure).__name__}: the block is too large or nested too deeply to analyse"
            defines, uses = [], []
        except Exception as failure:  # a bug here must cost one block, not the helper
            defines, uses, error = [], [], f"{type(failure).__name__}: {failure}"
        reply(id, defines, uses, error)


def main():
    replies = sys.stdout.buffer
    # Anything else printed (a library's warning) goes to stderr, never into the protocol.
    sys.stdout = sys.stderr
    # Deeply nested code recurses through the parser and this walker: give it room.
    sys.setrecursionlimit(200_000)
    try:
        threading.stack_size(256 << 20)
    except (ValueError, RuntimeError):
        pass
    worker = threading.Thread(target=serve, args=(sys.stdin.buffer, replies), daemon=True)
    worker.start()
    worker.join()


if __name__ == "__main__":
    main()
