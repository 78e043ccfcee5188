import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
await tf.setBackend('wasm'); await tf.ready();
const N=Number(process.argv[2]), B=32;
const x = tf.randomUniform([N, 784]); const yi = tf.oneHot(tf.randomUniform([N],0,10,'int32'),10).toFloat();
const W = [tf.randomNormal([784,200]),tf.zeros([200]),tf.randomNormal([200,200]),tf.zeros([200]),tf.randomNormal([200,10]),tf.zeros([10])].map(t=>tf.variable(t));
const lr = tf.scalar(0.05);
function step(xb: tf.Tensor2D, yb: tf.Tensor2D) {
  tf.tidy(()=>{
    const [W1,b1,W2,b2,W3,b3] = W as tf.Variable[];
    const h1 = tf.relu(tf.add(tf.matMul(xb,W1),b1));
    const h2 = tf.relu(tf.add(tf.matMul(h1,W2),b2));
    const z3 = tf.add(tf.matMul(h2,W3),b3);
    const p = tf.softmax(z3);
    const d3 = tf.div(tf.sub(p,yb), xb.shape[0]);
    const gW3 = tf.matMul(tf.transpose(h2),d3); const gb3 = tf.sum(d3,0);
    const d2 = tf.mul(tf.matMul(d3,tf.transpose(W3)), tf.step(h2));
    const gW2 = tf.matMul(tf.transpose(h1),d2); const gb2 = tf.sum(d2,0);
    const d1 = tf.mul(tf.matMul(d2,tf.transpose(W2)), tf.step(h1));
    const gW1 = tf.matMul(tf.transpose(xb),d1); const gb1 = tf.sum(d1,0);
    const gs=[gW1,gb1,gW2,gb2,gW3,gb3];
    for (let i=0;i<6;i++) W[i].assign(tf.sub(W[i], tf.mul(gs[i], lr)));
  });
}
for (let r=0;r<3;r++){
const t=performance.now();
for (let i=0;i<N;i+=B){ const xb = x.slice([i,0],[B,784]) as tf.Tensor2D; const yb = yi.slice([i,0],[B,10]) as tf.Tensor2D; step(xb,yb); xb.dispose(); yb.dispose(); }
await W[0].data();
console.log('manual', N, N/((performance.now()-t)/1000));
}
