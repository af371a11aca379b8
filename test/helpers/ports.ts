/** Free TCP ports on the loopback interface. */
import { createServer } from "node:net";

const handedOut = new Set<number>();

/**
 * A TCP port on 127.0.0.1 that nothing listens on right now. The kernel picks it; ports already
 * returned by this process are not returned again, so two servers started back to back never collide
 * with each other (another process may still take the port in between: start the server soon).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.unref();
      srv.once("error", reject);
      srv.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
        const addr = srv.address();
        const p = typeof addr === "object" && addr !== null ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (port > 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("find free port: no unused port on 127.0.0.1 after 50 attempts");
}
