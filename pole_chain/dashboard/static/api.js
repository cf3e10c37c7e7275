// The page's only ways to the node: its JSON-RPC (POST /) and the dashboard's JSON views
// (GET/POST /dashboard/api/...), which are themselves a JSON-RPC client of this node.

export class ApiError extends Error {}

async function answer(response) {
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new ApiError(`the node answered HTTP ${response.status} without JSON`);
  }
  if (!response.ok) {
    const error = new ApiError((body && body.error) || `HTTP ${response.status}`);
    error.body = body;
    throw error;
  }
  return body;
}

export async function view(path) {
  return answer(await fetch(`api/${path}`, { cache: "no-store" }));
}

export async function action(path, payload) {
  return answer(await fetch(`api/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  }));
}

let nextId = 1;
export async function rpc(method, params = []) {
  const response = await fetch("/", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  });
  const body = await response.json();
  if (body.error) throw new ApiError(body.error.message);
  return body.result;
}
