import { NotFoundError } from "../errors.js";

/** What staleness needs to know of a block: where it stands and the names it binds and reads. */
export interface BlockDeps {
  id: string;
  /** Order in the project; blocks are compared by position, then by their order in the list. */
  position: number;
  /** Names the block binds at module level (see DefUse.defines). */
  defines: readonly string[];
  /** Names the block reads from earlier blocks (see DefUse.uses). */
  uses: readonly string[];
}

/**
 * The blocks made stale when `sourceId` changed the names in `changed`: every block other than
 * the source that uses one of them, then, transitively, every block using a name one of those
 * defines. Ids in position order. Positions do not limit propagation (a block above the source
 * that uses a changed name is stale too); cycles end since each block is visited once.
 */
export function dependentsOf(
  blocks: readonly BlockDeps[],
  changed: ReadonlySet<string>,
  sourceId: string,
): string[] {
  const users = new Map<string, BlockDeps[]>();
  for (const block of blocks) {
    for (const name of new Set(block.uses)) {
      const list = users.get(name);
      if (list) list.push(block);
      else users.set(name, [block]);
    }
  }
  const stale = new Set<BlockDeps>();
  const seen = new Set<string>(changed);
  const queue = [...changed];
  for (let name = queue.pop(); name !== undefined; name = queue.pop()) {
    for (const block of users.get(name) ?? []) {
      if (block.id === sourceId || stale.has(block)) continue;
      stale.add(block);
      for (const defined of block.defines) {
        if (!seen.has(defined)) {
          seen.add(defined);
          queue.push(defined);
        }
      }
    }
  }
  return inOrder(blocks, stale);
}

/**
 * The blocks to run, in position order, to rebuild in a fresh kernel the state `targetId`
 * reads: for each name it uses, the nearest block before it that defines the name; then the
 * same for those blocks' uses, each resolved before that block. Names no earlier block defines
 * (builtins, names the target binds itself) are skipped. Excludes the target; throws
 * NotFoundError when no block has that id.
 */
export function upstreamOf(blocks: readonly BlockDeps[], targetId: string): string[] {
  const ordered = sortByPosition(blocks);
  const index = ordered.findIndex((block) => block.id === targetId);
  if (index < 0)
    throw new NotFoundError("BLOCK_NOT_FOUND", `no block ${targetId} among the ${blocks.length} given`);
  // For each name, the indexes (in position order) of the blocks that define it, ascending.
  const definers = new Map<string, number[]>();
  ordered.forEach((block, at) => {
    for (const name of new Set(block.defines)) {
      const list = definers.get(name);
      if (list) list.push(at);
      else definers.set(name, [at]);
    }
  });
  const needed = new Set<number>();
  const queue = [index];
  for (let at = queue.pop(); at !== undefined; at = queue.pop()) {
    for (const name of ordered[at]!.uses) {
      const definer = lastBefore(definers.get(name), at);
      if (definer !== undefined && !needed.has(definer)) {
        needed.add(definer);
        queue.push(definer);
      }
    }
  }
  return [...needed].sort((a, b) => a - b).map((at) => ordered[at]!.id);
}

/** The largest value in ascending `list` below `limit`. */
function lastBefore(list: readonly number[] | undefined, limit: number): number | undefined {
  if (!list) return undefined;
  let low = 0;
  let high = list.length; // answer index is high - 1 once low === high
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (list[middle]! < limit) low = middle + 1;
    else high = middle;
  }
  return low > 0 ? list[low - 1] : undefined;
}

/** Blocks by position; equal positions keep their order in the list. */
function sortByPosition(blocks: readonly BlockDeps[]): BlockDeps[] {
  return blocks
    .map((block, at) => ({ block, at }))
    .sort((a, b) => a.block.position - b.block.position || a.at - b.at)
    .map(({ block }) => block);
}

function inOrder(blocks: readonly BlockDeps[], chosen: ReadonlySet<BlockDeps>): string[] {
  return sortByPosition(blocks.filter((block) => chosen.has(block))).map((block) => block.id);
}
