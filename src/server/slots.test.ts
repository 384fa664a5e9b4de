import { describe, expect, it } from "vitest";
import { Slots } from "./slots.js";

describe("Slots", () => {
  it("hands a released slot to the next waiter and refuses past the waiting line", async () => {
    const slots = new Slots(1, 1);
    const first = await slots.acquire();
    const order: string[] = [];
    const second = slots.acquire().then((release) => {
      order.push("second");
      return release;
    });
    await expect(slots.acquire()).rejects.toMatchObject({ code: "AT_CAPACITY" });
    expect(slots.waiting).toBe(1);
    first();
    first(); // releasing twice frees one slot only
    const release = await second;
    expect(order).toEqual(["second"]);
    expect(slots.running).toBe(1);
    release();
    expect(slots.running).toBe(0);
  });
});
