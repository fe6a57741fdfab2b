// A small recording stand-in for the SST globals sst.config.ts and infra/*.ts use ($config, $app,
// $dev, $interpolate, sst.aws.*, sst.Secret, aws.ssm.Parameter). Each constructor records its name and args; deploy-time
// values (ARNs, names, URLs) are OutputRef tokens whose identity can be compared, so a test can ask
// "is this route's handler the search function's ARN?". Only what infra/ uses is modelled; an infra
// change that calls something else fails loudly here rather than passing silently.

export class OutputRef {
  constructor(readonly label: string) {}
  apply<U>(fn: (value: string) => U): OutputRef {
    return new OutputRef(String(fn(this.label)));
  }
  toString(): string {
    return this.label;
  }
  toJSON(): string {
    return this.label;
  }
}

// biome-ignore lint/suspicious/noExplicitAny: recorded args are checked by the tests, not typed here
type Args = any;

export abstract class StandInComponent {
  readonly outputs = new Map<string, OutputRef>();
  constructor(
    readonly type: string,
    readonly id: string,
    readonly args: Args,
    recorder: Recorder,
  ) {
    if (recorder.components.some((c) => c.id === id)) throw new Error(`duplicate component name "${id}"`);
    recorder.components.push(this);
  }
  protected out(property: string): OutputRef {
    let ref = this.outputs.get(property);
    if (!ref) this.outputs.set(property, (ref = new OutputRef(`${this.id}.${property}`)));
    return ref;
  }
  /** What `Resource.<id>` holds in a function this component is linked to (SST's getSSTLink). */
  abstract linkProperties(): Record<string, string | string[]>;
}

export interface RecordedRoute {
  api: string;
  route: string;
  handler: unknown;
}
export interface RecordedNotification {
  bucket: string;
  notification: Args;
}

export class Recorder {
  readonly components: StandInComponent[] = [];
  readonly routes: RecordedRoute[] = [];
  readonly notifications: RecordedNotification[] = [];

  byId<T extends StandInComponent>(id: string): T {
    const c = this.components.find((x) => x.id === id);
    if (!c)
      throw new Error(`no component named "${id}" was created (have: ${this.components.map((x) => x.id).join(", ")})`);
    return c as T;
  }
  ofType(type: string): StandInComponent[] {
    return this.components.filter((c) => c.type === type);
  }
  has(id: string): boolean {
    return this.components.some((c) => c.id === id);
  }
}

export interface StandInOptions {
  stage: string;
  dev?: boolean;
  /** Values `npx sst secret set` would have stored, by secret name. */
  secrets?: Record<string, string>;
}

const GLOBALS = ["$config", "$app", "$dev", "$interpolate", "$jsonStringify", "sst", "aws"] as const;

/** Installs the stand-in as globals and returns the recorder. Call uninstallSstStandIn() after. */
export function installSstStandIn(opts: StandInOptions): Recorder {
  const rec = new Recorder();
  const secrets = opts.secrets ?? {};

  class Bucket extends StandInComponent {
    constructor(id: string, args: Args = {}) {
      super("sst.aws.Bucket", id, args, rec);
    }
    get name() {
      return this.out("name");
    }
    get arn() {
      return this.out("arn");
    }
    notify(args: { notifications: Args[] }) {
      // SST allows one notify() per bucket: a second call would replace the first.
      if (rec.notifications.some((n) => n.bucket === this.id)) throw new Error(`notify() called twice on "${this.id}"`);
      for (const n of args.notifications) rec.notifications.push({ bucket: this.id, notification: n });
      return {};
    }
    linkProperties() {
      return { name: `bucket-${this.id.toLowerCase()}` };
    }
  }

  class FunctionComponent extends StandInComponent {
    constructor(id: string, args: Args) {
      if (typeof args?.handler !== "string") throw new Error(`sst.aws.Function "${id}" needs a handler`);
      super("sst.aws.Function", id, args, rec);
    }
    get name() {
      return this.out("name");
    }
    get arn() {
      return this.out("arn");
    }
    get nodes() {
      return { function: { version: this.out("version") } };
    }
    linkProperties() {
      return { name: `fn-${this.id.toLowerCase()}` };
    }
  }

  class Secret extends StandInComponent {
    readonly secretValue: string;
    constructor(id: string, placeholder?: string) {
      const value = secrets[id] ?? placeholder;
      // SST's own rule (components/secret.ts): no value and no placeholder stops the deploy.
      if (typeof value !== "string") throw new Error(`Set a value for ${id} with \`sst secret set ${id} <value>\``);
      super("sst.Secret", id, { placeholder }, rec);
      this.secretValue = value;
    }
    get name() {
      return this.out("name");
    }
    get value() {
      return this.out("value");
    }
    linkProperties() {
      return { value: this.secretValue };
    }
  }

  class ApiGatewayV2 extends StandInComponent {
    constructor(id: string, args: Args = {}) {
      super("sst.aws.ApiGatewayV2", id, args, rec);
    }
    get url() {
      return this.out("url");
    }
    route(route: string, handler: unknown) {
      if (rec.routes.some((r) => r.api === this.id && r.route === route)) throw new Error(`duplicate route "${route}"`);
      rec.routes.push({ api: this.id, route, handler });
      return {};
    }
    linkProperties() {
      return { url: `https://${this.id.toLowerCase()}.execute-api.example` };
    }
  }

  class Vpc extends StandInComponent {
    constructor(id: string, args: Args = {}) {
      super("sst.aws.Vpc", id, args, rec);
    }
    linkProperties(): Record<string, string> {
      throw new Error("a Vpc is not linkable");
    }
  }

  class Cluster extends StandInComponent {
    constructor(id: string, args: Args) {
      if (!(args?.vpc instanceof Vpc)) throw new Error(`sst.aws.Cluster "${id}" needs a vpc`);
      super("sst.aws.Cluster", id, args, rec);
    }
    linkProperties(): Record<string, string> {
      throw new Error("a Cluster is not linkable");
    }
  }

  class Service extends StandInComponent {
    constructor(id: string, args: Args) {
      if (!(args?.cluster instanceof Cluster)) throw new Error(`sst.aws.Service "${id}" needs a cluster`);
      super("sst.aws.Service", id, args, rec);
    }
    get url() {
      return this.out("url");
    }
    linkProperties() {
      // SST's Service link exposes the load balancer URL, with a trailing slash.
      return { url: `http://${this.id.toLowerCase()}.elb.example/` };
    }
  }

  class SsmParameter extends StandInComponent {
    constructor(id: string, args: Args) {
      super("aws.ssm.Parameter", id, args, rec);
    }
    get arn() {
      return this.out("arn");
    }
    linkProperties(): Record<string, string> {
      throw new Error("an aws.ssm.Parameter is not linkable");
    }
  }

  class IamRole extends StandInComponent {
    constructor(id: string, args: Args) {
      JSON.parse(args?.assumeRolePolicy); // a malformed policy fails the deploy
      super("aws.iam.Role", id, args, rec);
    }
    get arn() {
      return this.out("arn");
    }
    linkProperties(): Record<string, string> {
      throw new Error("an aws.iam.Role is not linkable");
    }
  }
  class IamRolePolicy extends StandInComponent {
    constructor(id: string, args: Args) {
      super("aws.iam.RolePolicy", id, args, rec);
    }
    linkProperties(): Record<string, string> {
      throw new Error("an aws.iam.RolePolicy is not linkable");
    }
  }
  class StateMachine extends StandInComponent {
    constructor(id: string, args: Args) {
      if (typeof args?.definition !== "object" && typeof args?.definition !== "string")
        throw new Error(`aws.sfn.StateMachine "${id}" needs a definition`);
      super("aws.sfn.StateMachine", id, args, rec);
    }
    get arn() {
      return this.out("arn");
    }
    linkProperties(): Record<string, string> {
      throw new Error("an aws.sfn.StateMachine is not linkable: wrap it in sst.Linkable");
    }
  }
  class Linkable extends StandInComponent {
    constructor(id: string, args: Args) {
      super("sst.Linkable", id, args, rec);
    }
    linkProperties(): Record<string, string | string[]> {
      // SST serialises link properties as JSON: a list stays a list.
      return Object.fromEntries(
        Object.entries(this.args.properties ?? {}).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : String(v)]),
      );
    }
  }
  const permission = (args: Args) => ({ type: "aws.permission", ...args });

  const g = globalThis as Record<string, unknown>;
  g.$jsonStringify = (value: unknown) => new OutputRef(JSON.stringify(value));
  g.$config = (config: unknown) => config;
  g.$app = { name: "two-stage-retrieval", stage: opts.stage };
  g.$dev = opts.dev ?? false;
  g.$interpolate = (strings: TemplateStringsArray, ...values: unknown[]) =>
    new OutputRef(strings.reduce((acc, s, i) => acc + s + (i < values.length ? String(values[i]) : ""), ""));
  g.sst = {
    Secret,
    Linkable,
    aws: { Bucket, Function: FunctionComponent, ApiGatewayV2, Vpc, Cluster, Service, permission },
  };
  g.aws = {
    ssm: { Parameter: SsmParameter },
    iam: { Role: IamRole, RolePolicy: IamRolePolicy },
    sfn: { StateMachine },
  };
  return rec;
}

export function uninstallSstStandIn(): void {
  const g = globalThis as Record<string, unknown>;
  for (const name of GLOBALS) delete g[name];
}

/** The `Resource` object a function sees for its `link` list; fails on anything SST could not link. */
export function linkedResource(link: unknown[]): Record<string, Record<string, string | string[]>> {
  const out: Record<string, Record<string, string | string[]>> = {};
  for (const [i, item] of link.entries()) {
    if (!(item instanceof StandInComponent)) throw new Error(`link[${i}] is not a linkable component: ${String(item)}`);
    out[item.id] = item.linkProperties();
  }
  return out;
}

/** A function's environment as the strings Lambda would hold (deploy-time tokens by label). */
export function resolvedEnvironment(environment: Record<string, unknown> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(environment ?? {}).map(([k, v]) => [k, String(v)]));
}
