// The call-out flow of bench/plugins/callout.c in njs (bench/nginx/callout.conf.in):
// ask the auth service (ngx.fetch), then, on 200, proxy the request
// (a subrequest to the proxied location: njs has no access phase handler
// in nginx's http module, so the flow runs in js_content).
async function auth_then_proxy(r) {
    var auth = await ngx.fetch('http://127.0.0.1:@UPSTREAM_PORT@/auth');
    if (auth.status != 200) {
        r.return(403, "denied\n");
        return;
    }
    r.subrequest('/_backend', { method: 'GET' }, function(reply) {
        r.return(reply.status, reply.responseText);
    });
}

export default {auth_then_proxy};
