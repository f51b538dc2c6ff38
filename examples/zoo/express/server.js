// A recording Express app for tok's framework zoo.
//
// Every request, whatever its method and path, is answered with JSON holding
// everything Express and its usual middleware parsed: body-parser's JSON
// (express.json), urlencoded with extended: true (qs) and text
// (express.text) parsers, multer for multipart (text fields and file
// contents), cookie-parser, the query (qs), headers, path and method, and a
// JSON.parse of the raw body text whatever its Content-Type, as apps that
// read the body themselves do. The zoo test searches the answer for card
// numbers.
//
//   PORT=5002 node server.js     # listens on 127.0.0.1 only

'use strict';

const express = require('express');
const multer = require('multer');
const cookieParser = require('cookie-parser');

const app = express();
app.set('query parser', 'extended'); // qs, Express 4's default

// verify keeps the raw bytes of whichever parser read the body.
// Tells the zoo test the app answered (not tok, nor Node's HTTP server).
app.use((req, res, next) => { res.set('X-Zoo-App', 'express'); next(); });

const keep = (req, res, buf) => { req.rawBody = buf; };
app.use(cookieParser());
app.use(express.json({ verify: keep, limit: '16mb' }));
app.use(express.urlencoded({ extended: true, verify: keep, limit: '16mb' }));
app.use(express.text({ verify: keep, limit: '16mb' }));
app.use(multer({ storage: multer.memoryStorage() }).any());

// Bodies no parser took (another type, a GET with a body): read them as an
// app that handles the stream itself would.
app.use((req, res, next) => {
  if (req._body || req.readableEnded) return next();
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => { req.rawBody = Buffer.concat(chunks); next(); });
  req.on('error', next);
});

function lenientJSON(buf) {
  if (!buf || buf.length === 0) return null;
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (e) {
    return null;
  }
}

app.all('*', (req, res) => {
  const files = (req.files || []).map((f) => ({
    field: f.fieldname,
    filename: f.originalname,
    content_type: f.mimetype,
    content: f.buffer.toString('utf8'),
  }));
  res.json({
    framework: 'express',
    method: req.method,
    path: req.path,
    url: req.originalUrl,
    params: req.params,
    query: req.query,
    body: req.body === undefined ? null : req.body,
    raw_json: lenientJSON(req.rawBody),
    files,
    headers: req.headers,
    cookies: req.cookies,
    signed_cookies: req.signedCookies,
  });
});

// A parser's refusal (bad JSON, an unsupported charset or encoding) is the
// framework refusing the request: answer it without a parsed view.
app.use((err, req, res, next) => {
  res.status(err.status || 500).json({ framework: 'express', error: err.type || String(err.message) });
});

const port = Number(process.argv[2] || process.env.PORT || 5002);
app.listen(port, '127.0.0.1');
