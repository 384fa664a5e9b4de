import { describe, expect, it } from "vitest";
import { NotFoundError } from "../errors.js";
import { type BlockDeps, dependentsOf, upstreamOf } from "./staleness.js";

/** Blocks at positions 0, 1, 2… from [id, defines, uses] triples. */
function blocks(...specs: [id: string, defines: string[], uses: string[]][]): BlockDeps[] {
  return specs.map(([id, defines, uses], position) => ({ id, position, defines, uses }));
}

describe("dependentsOf", () => {
  it("follows a chain a → b → c", () => {
    const all = blocks(["a", ["x"], []], ["b", ["y"], ["x"]], ["c", ["z"], ["y"]]);
    expect(dependentsOf(all, new Set(["x"]), "a")).toEqual(["b", "c"]);
    expect(dependentsOf(all, new Set(["y"]), "b")).toEqual(["c"]);
    expect(dependentsOf(all, new Set(["z"]), "c")).toEqual([]);
  });

  it("reaches each block of a diamond once", () => {
    const all = blocks(
      ["a", ["x"], []],
      ["b", ["y"], ["x"]],
      ["c", ["z"], ["x"]],
      ["d", ["w"], ["y", "z"]],
      ["e", [], ["w"]],
    );
    expect(dependentsOf(all, new Set(["x"]), "a")).toEqual(["b", "c", "d", "e"]);
  });

  it("leaves unrelated blocks alone", () => {
    const all = blocks(["a", ["x"], []], ["b", ["y"], []], ["c", [], ["y"]], ["d", [], ["x"]]);
    expect(dependentsOf(all, new Set(["x"]), "a")).toEqual(["d"]);
  });

  it("propagates only the names that changed, then what dependents define", () => {
    const all = blocks(["a", ["x", "y"], []], ["b", [], ["x"]], ["c", [], ["y"]]);
    expect(dependentsOf(all, new Set(["y"]), "a")).toEqual(["c"]);
  });

  it("returns ids in position order, whatever the order of the list", () => {
    const all: BlockDeps[] = [
      { id: "late", position: 9, defines: [], uses: ["x"] },
      { id: "src", position: 0, defines: ["x"], uses: [] },
      { id: "mid", position: 4, defines: [], uses: ["x"] },
    ];
    expect(dependentsOf(all, new Set(["x"]), "src")).toEqual(["mid", "late"]);
  });

  it("includes users above the source: dependencies do not follow positions", () => {
    const all = blocks(["above", [], ["x"]], ["src", ["x"], []]);
    expect(dependentsOf(all, new Set(["x"]), "src")).toEqual(["above"]);
  });

  it("terminates on cycles and never lists the source", () => {
    const all = blocks(["a", ["x"], ["y"]], ["b", ["y"], ["x"]]);
    expect(dependentsOf(all, new Set(["x"]), "a")).toEqual(["b"]);
    const ring = blocks(["p", ["p1"], ["r1"]], ["q", ["q1"], ["p1"]], ["r", ["r1"], ["q1"]]);
    expect(dependentsOf(ring, new Set(["q1"]), "q")).toEqual(["p", "r"]);
  });

  it("counts a block that uses and redefines a name (x += 1) and goes on through it", () => {
    const all = blocks(["a", ["x"], []], ["b", ["x"], ["x"]], ["c", [], ["x"]]);
    expect(dependentsOf(all, new Set(["x"]), "a")).toEqual(["b", "c"]);
  });

  it("handles empty inputs and an unknown source (a deleted block)", () => {
    expect(dependentsOf([], new Set(["x"]), "a")).toEqual([]);
    const all = blocks(["a", [], ["x"]]);
    expect(dependentsOf(all, new Set(), "z")).toEqual([]);
    expect(dependentsOf(all, new Set(["x"]), "gone")).toEqual(["a"]);
  });

  it("stays linear on a long chain", () => {
    const n = 20_000;
    const all = Array.from({ length: n }, (_, i) => ({
      id: `b${i}`,
      position: i,
      defines: [`v${i}`],
      uses: i === 0 ? [] : [`v${i - 1}`],
    }));
    const stale = dependentsOf(all, new Set(["v0"]), "b0");
    expect(stale).toHaveLength(n - 1);
    expect(stale[0]).toBe("b1");
    expect(stale.at(-1)).toBe(`b${n - 1}`);
  });
});

describe("upstreamOf", () => {
  it("follows a chain back to its start", () => {
    const all = blocks(["a", ["x"], []], ["b", ["y"], ["x"]], ["c", ["z"], ["y"]]);
    expect(upstreamOf(all, "c")).toEqual(["a", "b"]);
    expect(upstreamOf(all, "b")).toEqual(["a"]);
    expect(upstreamOf(all, "a")).toEqual([]);
  });

  it("lists each block of a diamond once", () => {
    const all = blocks(["a", ["x"], []], ["b", ["y"], ["x"]], ["c", ["z"], ["x"]], ["d", [], ["y", "z"]]);
    expect(upstreamOf(all, "d")).toEqual(["a", "b", "c"]);
  });

  it("skips blocks the target does not need", () => {
    const all = blocks(["a", ["x"], []], ["noise", ["n"], []], ["b", [], ["x"]]);
    expect(upstreamOf(all, "b")).toEqual(["a"]);
  });

  it("takes the nearest earlier definition of a name", () => {
    const all = blocks(["a1", ["x"], []], ["a2", ["x"], ["k"]], ["k", ["k"], []], ["t", [], ["x"]]);
    // a2 defines x last before t; a2 needs k, defined only after it: skipped.
    expect(upstreamOf(all, "t")).toEqual(["a2"]);
  });

  it("resolves each block's uses before that block", () => {
    const all = blocks(
      ["k0", ["k"], []],
      ["a", ["x"], ["k"]],
      ["k1", ["k"], []], // after a: not what a read
      ["t", [], ["x"]],
    );
    expect(upstreamOf(all, "t")).toEqual(["k0", "a"]);
  });

  it("chains augmented assignments: each x += 1 needs the x before it", () => {
    const all = blocks(["a", ["x"], []], ["b", ["x"], ["x"]], ["c", ["x"], ["x"]], ["t", [], ["x"]]);
    expect(upstreamOf(all, "t")).toEqual(["a", "b", "c"]);
  });

  it("ignores definitions after the target and names nobody defines", () => {
    const all = blocks(["t", [], ["x", "print"]], ["later", ["x"], []]);
    expect(upstreamOf(all, "t")).toEqual([]);
  });

  it("ignores the target's own definitions", () => {
    const all = blocks(["a", ["x"], []], ["t", ["y"], ["x", "y"]], ["u", ["y"], []]);
    expect(upstreamOf(all, "t")).toEqual(["a"]);
  });

  it("terminates when names form a cycle", () => {
    const all = blocks(["a", ["x"], ["y"]], ["b", ["y"], ["x"]], ["t", [], ["x", "y"]]);
    expect(upstreamOf(all, "t")).toEqual(["a", "b"]);
  });

  it("orders by position, not by the list", () => {
    const all: BlockDeps[] = [
      { id: "t", position: 30, defines: [], uses: ["y"] },
      { id: "b", position: 20, defines: ["y"], uses: ["x"] },
      { id: "a", position: 10, defines: ["x"], uses: [] },
    ];
    expect(upstreamOf(all, "t")).toEqual(["a", "b"]);
  });

  it("throws NotFoundError for an unknown target", () => {
    expect(() => upstreamOf(blocks(["a", [], []]), "nope")).toThrow(NotFoundError);
  });

  it("stays fast on a long chain", () => {
    const n = 20_000;
    const all = Array.from({ length: n }, (_, i) => ({
      id: `b${i}`,
      position: i,
      defines: ["x", `v${i}`],
      uses: i === 0 ? [] : ["x", `v${i - 1}`],
    }));
    const upstream = upstreamOf(all, `b${n - 1}`);
    expect(upstream).toHaveLength(n - 1);
    expect(upstream[0]).toBe("b0");
  });
});
