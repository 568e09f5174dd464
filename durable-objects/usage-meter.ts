import { DurableObject } from "cloudflare:workers";
import type { MeterConfig } from "../src/modules/usage/meter-config";

export class UsageMeter extends DurableObject<Env> {
  async configure(config: MeterConfig): Promise<number> {
    const held = (await this.ctx.storage.get<MeterConfig>("config"))?.version ?? 0;
    if (config.version > held) await this.ctx.storage.put("config", config);
    return Math.max(held, config.version);
  }
}
