// An HTTP server (node's http module) that answers 413 at once, without reading the
// upload, and closes the connection (Connection: close).
// usage: node node_early.js ANSWER_BYTES    prints "port N"; SIGTERM: exit(0)
'use strict';
const http = require('http');
const n = parseInt(process.argv[2], 10);
const answer = Buffer.alloc(n, 'a');
const server = http.createServer((req, res) => {
  res.writeHead(413, {'Content-Type': 'application/octet-stream',
                      'Content-Length': answer.length, 'Connection': 'close'});
  res.end(answer);
});
server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
process.on('SIGTERM', () => process.exit(0));
